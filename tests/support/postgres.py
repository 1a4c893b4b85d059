"""Throwaway PostgreSQL clusters for tests.

``throwaway_postgres()`` runs ``initdb`` into a fresh temporary directory, starts
``postgres`` on a free loopback port with durability switched off (fast, and fine
for data that is thrown away), creates the ``tendril`` database, and tears it all
down on exit.

PostgreSQL refuses to run as root. When this process is root the server binaries
run as the ``postgres`` system user (created by the Debian package), or as a
``tendril-pg`` system user created on demand, and the temporary directory is
handed to that user.

Run ``python -m tests.support.postgres`` to get a cluster for manual poking; it
prints the asyncpg URL and stops the cluster on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

__all__ = ["PostgresCluster", "find_postgres_bin", "main", "throwaway_postgres"]

PG_ROOT = Path("/usr/lib/postgresql")
USER = "tendril"
DATABASE = "tendril"
FALLBACK_SYSTEM_USER = "tendril-pg"
_START_ATTEMPTS = 3
_TIMEOUT = 120  # seconds, for any single initdb / pg_ctl / createdb call


@dataclass(frozen=True)
class PostgresCluster:
    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, driver: str = "asyncpg") -> str:
        """SQLAlchemy-style URL; ``driver=""`` gives a plain ``postgresql://`` URL."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return (
            f"{scheme}://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.database, safe='')}"
        )


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def find_postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` that has initdb, pg_ctl and postgres."""
    candidates = [
        b
        for b in PG_ROOT.glob("*/bin")
        if all((b / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres"))
    ]
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL server binaries not found under {PG_ROOT}/*/bin. "
            "Run scripts/ensure-postgres (installs the Debian 'postgresql' package)."
        )
    return max(candidates, key=_version_key)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_system_user() -> str:
    """Unprivileged user to run the server as when we are root."""
    for name in ("postgres", FALLBACK_SYSTEM_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_SYSTEM_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    # Exit code 9: the user appeared concurrently (another test process made it).
    if proc.returncode not in (0, 9):
        raise RuntimeError(
            f"could not create system user {FALLBACK_SYSTEM_USER!r} to run PostgreSQL as "
            f"(PostgreSQL refuses to run as root):\n{proc.stdout}{proc.stderr}"
        )
    return FALLBACK_SYSTEM_USER


def _world_traversable(path: Path) -> bool:
    """True when every directory from / down to ``path`` is o+x."""
    for p in (path, *path.parents):
        try:
            if not p.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


class _Runner:
    """Runs PostgreSQL binaries, as an unprivileged user when we are root."""

    def __init__(self) -> None:
        self.cwd: Path | None = None
        self.user: str | None = None
        self._runuser: str | None = None
        if os.geteuid() == 0:
            self.user = _ensure_system_user()
            self._runuser = shutil.which("runuser") or next(
                (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.path.exists(p)), None
            )

    def give(self, path: Path) -> None:
        """Hand ``path`` (recursively) to the user the server runs as."""
        if self.user is None:
            return
        entry = pwd.getpwnam(self.user)
        for dirpath, dirnames, filenames in os.walk(path):
            os.chown(dirpath, entry.pw_uid, entry.pw_gid)
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        what: str,
        as_server_user: bool = True,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        args = [os.fspath(a) for a in argv]
        kwargs: dict[str, object] = {}
        if as_server_user and self.user is not None:
            if self._runuser:
                args = [self._runuser, "-u", self.user, "--", *args]
            else:  # no util-linux runuser: switch user in the child directly
                entry = pwd.getpwnam(self.user)
                kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        try:
            proc = subprocess.run(
                args,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_TIMEOUT,
                check=False,
                **kwargs,  # type: ignore[arg-type]
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{what} timed out after {_TIMEOUT}s: {' '.join(args)}") from exc
        if proc.returncode != 0:
            detail = (proc.stdout or "") + (proc.stderr or "")
            if log is not None and log.exists():
                detail += f"\n--- {log.name} ---\n" + log.read_text(errors="replace")[-8000:]
            raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(args)}\n{detail.strip()}")
        return proc


def _make_tempdir(as_other_user: bool) -> Path:
    base = Path(tempfile.gettempdir())
    if as_other_user and not _world_traversable(base):
        base = Path("/tmp")  # the server user must be able to reach its data dir
    return Path(tempfile.mkdtemp(prefix="tendril-pg-", dir=base))


def _kill_leftover(data: Path) -> None:
    """Last resort when pg_ctl stop fails: SIGKILL the postmaster named in postmaster.pid."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            os.kill(pid, 0)  # raises once it is gone
            time.sleep(0.1)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PostgresCluster]:
    """Start a private, throwaway PostgreSQL cluster; stop and delete it on exit."""
    bindir = find_postgres_bin()
    runner = _Runner()
    tmp = _make_tempdir(as_other_user=runner.user is not None)
    runner.cwd = tmp
    started = False
    data = tmp / "data"
    try:
        sockdir = tmp / "sock"
        sockdir.mkdir()
        log = tmp / "postgres.log"
        pwfile = tmp / "pwfile"
        password = secrets.token_urlsafe(18)
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        tmp.chmod(0o700)
        runner.give(tmp)

        runner.run(
            [
                bindir / "initdb",
                "-D",
                data,
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            what="initdb",
        )
        pwfile.unlink()

        port = 0
        for attempt in range(_START_ATTEMPTS):
            port = _free_port()
            opts = (
                f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                runner.run(
                    [bindir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", opts, "start"],
                    what="pg_ctl start",
                    log=log,
                )
                started = True
                break
            except RuntimeError:
                # Most likely someone grabbed the port between probe and bind; retry.
                _kill_leftover(data)
                if attempt == _START_ATTEMPTS - 1:
                    raise

        env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
        runner.run(
            [bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
            what="createdb",
            as_server_user=False,
            env=env,
        )

        yield PostgresCluster(host="127.0.0.1", port=port, user=USER, password=password, database=DATABASE)
    finally:
        if started:
            try:
                runner.run(
                    [bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"],
                    what="pg_ctl stop",
                )
            except RuntimeError:
                _kill_leftover(data)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    """``python -m tests.support.postgres``: run a cluster until Ctrl-C."""

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Explicit, so Ctrl-C works even when started from a shell that ignores SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    t0 = time.monotonic()
    with throwaway_postgres() as cluster:
        print(cluster.url(), flush=True)
        print(
            f"PostgreSQL ready in {time.monotonic() - t0:.1f}s "
            f"(psql: PGPASSWORD={cluster.password} psql -h {cluster.host} -p {cluster.port} "
            f"-U {cluster.user} {cluster.database}). Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping PostgreSQL", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
