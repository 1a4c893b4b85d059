"""MCP `tools/call` throughput: a bare `mcp` SDK server next to Tendril, same load, same machine.

    python bench/mcp_throughput.py [--duration 8] [--concurrency 16] [--rounds 2] [--client raw|httpx]

Everything runs on 127.0.0.1 in one process tree:

- baseline: `mcp.server.mcpserver.MCPServer` with one `echo` tool, Streamable HTTP in the SDK's
  default mode (stateful sessions, answers as SSE), which is the mode Tendril serves, logging at
  WARNING; a subprocess of this script.
- Tendril: `tendril serve` in a subprocess with a temporary data dir (SQLite), logging at WARNING,
  Slack pointed at `tests.fakes.slack.FakeSlack` served from a thread of this (otherwise idle)
  process. It is set up through its REST API: the admin key printed on first start, a Slack
  connection with a token the fake accepts, an agent allowed `slack`.
- load: a subprocess per round, so the generator never shares a process with a server. Each of N
  workers opens its own connection and MCP session (initialize + notifications/initialized, keeping
  the Mcp-Session-Id) and then sends `tools/call` back to back; every request's latency is recorded.
  The targets are loaded one at a time, alternating over `--rounds` so that noise from other work
  on the machine hits both alike.

Besides requests/s and latency it reports each server's CPU time per request (from /proc), which
is much less sensitive to a busy machine than wall-clock figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SLACK_TOKEN = "xoxb-4242-4242-BenchmarkSlackToken"
STARTUP_TIMEOUT = 30.0
ECHO_ARGS = {"text": "hello from the benchmark"}
SLACK_ARGS = {"channel": "#general", "text": "hello from the benchmark"}
BASELINE_MODES = ["stateful-sse", "stateless-json"]


# -- HTTP clients for the load generator --------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


class Http(Protocol):
    async def post(self, headers: dict[str, str], body: bytes) -> Reply: ...
    async def delete(self, headers: dict[str, str]) -> Reply: ...
    async def aclose(self) -> None: ...


class RawHttp:
    """One keep-alive HTTP/1.1 connection over asyncio streams: a fraction of httpx's CPU per request."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._path = parts.path or "/"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _send(self, method: str, headers: dict[str, str], body: bytes) -> Reply:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        head = [f"{method} {self._path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        reply_headers: dict[str, str] = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                reply_headers[name.strip().lower()] = value.strip()
        if "content-length" in reply_headers:
            content = await reader.readexactly(int(reply_headers["content-length"]))
        elif reply_headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while size := int((await reader.readline()).split(b";")[0], 16):
                chunks.append((await reader.readexactly(size + 2))[:-2])
            while (await reader.readline()) not in (b"\r\n", b""):  # trailers
                pass
            content = b"".join(chunks)
        else:
            content = await reader.read()
            reply_headers["connection"] = "close"
        if reply_headers.get("connection", "").lower() == "close":
            await self.aclose()
        return Reply(int(status_line.split(" ", 2)[1]), reply_headers, content)

    async def post(self, headers: dict[str, str], body: bytes) -> Reply:
        return await self._send("POST", headers, body)

    async def delete(self, headers: dict[str, str]) -> Reply:
        return await self._send("DELETE", headers, b"")

    async def get(self, headers: dict[str, str]) -> Reply:
        return await self._send("GET", headers, b"")

    async def aclose(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class HttpxHttp:
    """The same through one httpx.AsyncClient each (to cross-check the raw client)."""

    def __init__(self, url: str) -> None:
        import httpx

        self._url = url
        self._client = httpx.AsyncClient(timeout=30.0)

    async def post(self, headers: dict[str, str], body: bytes) -> Reply:
        response = await self._client.post(self._url, headers=headers, content=body)
        return Reply(response.status_code, dict(response.headers), response.content)

    async def delete(self, headers: dict[str, str]) -> Reply:
        response = await self._client.delete(self._url, headers=headers)
        return Reply(response.status_code, dict(response.headers), response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


# -- load generator (runs in its own process: `_load`) ------------------------------------------
@dataclass
class LoadResult:
    latencies: list[float]
    errors: int
    seconds: float
    loadgen_cpu_seconds: float
    server_cpu_seconds: float | None
    protocol_requested: str
    protocol_negotiated: list[str]
    first_error: str | None = None


def _rpc_messages(reply: Reply) -> list[dict[str, Any]]:
    """JSON-RPC messages in a Streamable HTTP answer: a JSON body or an SSE stream of `data:` lines."""
    text = reply.body.decode()
    if reply.headers.get("content-type", "").startswith("text/event-stream"):
        messages: list[dict[str, Any]] = []
        for event in text.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in event.split("\n") if line.startswith("data:"))
            if data:
                messages.append(json.loads(data))
        return messages
    return [json.loads(text)] if text else []


def _answer(reply: Reply, request_id: int) -> dict[str, Any]:
    if reply.status != 200:
        raise RuntimeError(f"HTTP {reply.status}: {reply.body[:200]!r}")
    for message in _rpc_messages(reply):
        if message.get("id") == request_id:
            if "error" in message:
                raise RuntimeError(f"JSON-RPC error: {message['error']}")
            return message["result"]
    raise RuntimeError(f"no answer to request {request_id} in {reply.body[:200]!r}")


def _process_cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of `pid` from /proc (Linux); None elsewhere."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_load(
    url: str,
    token: str | None,
    tool: str,
    arguments: dict[str, Any],
    *,
    duration: float,
    concurrency: int,
    warmup: float,
    client: str = "raw",
    server_pid: int | None = None,
) -> LoadResult:
    from mcp_types.version import LATEST_HANDSHAKE_VERSION

    base_headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token:
        base_headers["Authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    errors = 0
    first_error: list[str] = []
    negotiated: set[str] = set()
    connections: list[Http] = [
        RawHttp(url) if client == "raw" else HttpxHttp(url) for _ in range(concurrency)
    ]

    async def open_session(http: Http) -> dict[str, str]:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": LATEST_HANDSHAKE_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "tendril-bench", "version": "1"},
            },
        }
        reply = await http.post(base_headers, json.dumps(init).encode())
        version = _answer(reply, 0)["protocolVersion"]
        negotiated.add(version)
        headers = {**base_headers, "MCP-Protocol-Version": version}
        if session_id := reply.headers.get("mcp-session-id"):
            headers["Mcp-Session-Id"] = session_id
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        done = await http.post(headers, json.dumps(note).encode())
        if done.status not in (200, 202):
            raise RuntimeError(f"notifications/initialized: HTTP {done.status}")
        return headers

    sessions = await asyncio.gather(*(open_session(http) for http in connections))
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + duration
    window: dict[str, float | None] = {}

    async def mark_window() -> None:
        await asyncio.sleep(max(0.0, start - loop.time()))
        window["server0"], window["own0"] = _process_cpu_seconds(server_pid), _own_cpu_seconds()

    async def worker(http: Http, headers: dict[str, str]) -> None:
        nonlocal errors
        request_id = 0
        while (began := loop.time()) < stop:
            request_id += 1
            call = {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments},
            }
            try:
                result = _answer(await http.post(headers, json.dumps(call).encode()), request_id)
                if result.get("isError"):
                    raise RuntimeError(f"tool error: {json.dumps(result)[:300]}")
                ok = True
            except (RuntimeError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
                ok = False
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}")
            # What started inside the window counts; the window then lasts until the last one ends.
            if began >= start:
                if ok:
                    latencies.append(loop.time() - began)
                else:
                    errors += 1

    await asyncio.gather(mark_window(), *(worker(h, s) for h, s in zip(connections, sessions, strict=True)))
    window["server1"], window["own1"] = _process_cpu_seconds(server_pid), _own_cpu_seconds()
    seconds = max(loop.time(), stop) - start
    for http, headers in zip(connections, sessions, strict=True):
        if "Mcp-Session-Id" in headers:  # end the sessions politely
            await http.delete(headers)
        await http.aclose()

    server0, server1 = window.get("server0"), window.get("server1")
    return LoadResult(
        latencies=latencies,
        errors=errors,
        seconds=seconds,
        loadgen_cpu_seconds=float(window["own1"] or 0) - float(window["own0"] or 0),
        server_cpu_seconds=None if server0 is None or server1 is None else server1 - server0,
        protocol_requested=LATEST_HANDSHAKE_VERSION,
        protocol_negotiated=sorted(negotiated),
        first_error=first_error[0] if first_error else None,
    )


def cmd_load(args: argparse.Namespace) -> int:
    result = asyncio.run(
        run_load(
            args.url,
            args.token,
            args.tool,
            json.loads(args.arguments),
            duration=args.duration,
            concurrency=args.concurrency,
            warmup=args.warmup,
            client=args.client,
            server_pid=args.server_pid,
        )
    )
    print(json.dumps(asdict(result)), flush=True)
    return 0


# -- baseline server (runs in its own process: `_baseline`) -----------------------------------
def cmd_baseline(args: argparse.Namespace) -> int:
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bench-baseline", log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    stateless = args.mode == "stateless-json"
    app = server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=stateless, json_response=stateless
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


# -- orchestration -----------------------------------------------------------------------------
@dataclass
class Summary:
    """Every round of one target, merged."""

    latencies: list[float] = field(default_factory=list[float])
    errors: int = 0
    seconds: float = 0.0
    loadgen_cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = 0.0
    negotiated: set[str] = field(default_factory=set[str])
    requested: str = ""
    first_error: str | None = None

    def add(self, result: LoadResult) -> None:
        self.latencies += result.latencies
        self.errors += result.errors
        self.seconds += result.seconds
        self.loadgen_cpu_seconds += result.loadgen_cpu_seconds
        if self.server_cpu_seconds is not None and result.server_cpu_seconds is not None:
            self.server_cpu_seconds += result.server_cpu_seconds
        else:
            self.server_cpu_seconds = None
        self.negotiated.update(result.protocol_negotiated)
        self.requested = result.protocol_requested
        self.first_error = self.first_error or result.first_error

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    @property
    def server_cpu_ms_per_request(self) -> float:
        if self.server_cpu_seconds is None or not self.requests:
            return float("nan")
        return 1000 * self.server_cpu_seconds / self.requests

    @property
    def loadgen_cpu_percent(self) -> float:
        return 100 * self.loadgen_cpu_seconds / self.seconds if self.seconds else 0.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} during startup")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} not listening on port {port} after {STARTUP_TIMEOUT}s")


@contextmanager
def _process(
    cmd: list[str], *, env: dict[str, str], cwd: Path, log: IO[str], read_stdout: bool = False
) -> Iterator[subprocess.Popen[str]]:
    stdout = subprocess.PIPE if read_stdout else subprocess.DEVNULL
    process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=stdout, stderr=log, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()


def _clean_env() -> dict[str, str]:
    """This environment without TENDRIL_* (the benchmark sets its own), with the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENDRIL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _read_admin_key(process: subprocess.Popen[str]) -> str:
    """`tendril serve` on an empty database prints the bootstrap admin key under a known line."""
    found: list[str] = []
    seen: list[str] = []

    def reader() -> None:
        assert process.stdout is not None
        take_next = False
        for line in process.stdout:
            seen.append(line.rstrip())
            if take_next:
                found.append(line.strip())
                take_next = False
            elif "API key is shown only this once" in line:
                take_next = True
            elif line.startswith("Tendril serving on"):
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(STARTUP_TIMEOUT)
    if not found:
        raise RuntimeError(f"no admin key in `tendril serve` output: {seen}")
    return found[0]


async def _set_up_tendril(url: str, admin_key: str) -> str:
    from clients import TendrilClient

    async with TendrilClient(url, api_key=admin_key) as tendril:
        started = await tendril.create_connection("slack", label="bench")
        connection = await tendril.submit_credentials(started.connection.id, {"bot_token": SLACK_TOKEN})
        if connection.status != "active":
            raise RuntimeError(f"Slack connection is {connection.status}, not active")
        agent = await tendril.create_agent("bench", ["slack"])
        return agent.api_key


@dataclass
class Target:
    name: str
    url: str
    token: str | None
    tool: str
    arguments: dict[str, Any]
    pid: int
    summary: Summary = field(default_factory=Summary)


def _run_load(env: dict[str, str], target: Target, seconds: float, args: argparse.Namespace) -> LoadResult:
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "_load", "--url", target.url, "--tool", target.tool,
        "--arguments", json.dumps(target.arguments), "--duration", str(seconds),
        "--concurrency", str(args.concurrency), "--warmup", str(args.warmup), "--client", args.client,
        "--server-pid", str(target.pid),
    ]  # fmt: skip
    if target.token:
        cmd += ["--token", target.token]
    done = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=seconds + args.warmup + 120
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr}")
    return LoadResult(**json.loads(done.stdout.strip().splitlines()[-1]))


def _print_table(baseline: Summary, tendril: Summary, args: argparse.Namespace) -> None:
    print()
    print(
        f"tools/call over Streamable HTTP (Tendril: stateful, SSE; baseline: {args.baseline_mode}), "
        f"{args.concurrency} workers, "
        f"{args.duration:g}s measured per server in {args.rounds} alternating round(s), "
        f"{args.client} HTTP client, {os.cpu_count()} CPUs"
    )
    print(
        f"client protocol version: requested {baseline.requested}; negotiated: baseline "
        f"{', '.join(sorted(baseline.negotiated))}, Tendril {', '.join(sorted(tendril.negotiated))}"
    )
    header = (
        f"{'server':<34} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'srv CPU ms/req':>14} "
        f"{'requests':>8} {'errors':>6} {'gen CPU':>7}"
    )
    print(header)
    print("-" * len(header))
    rows = (("mcp SDK MCPServer echo (baseline)", baseline), ("Tendril slack_post_message", tendril))
    for name, s in rows:
        print(
            f"{name:<34} {s.rps:>7.1f} {s.percentile_ms(0.5):>7.1f} {s.percentile_ms(0.99):>7.1f} "
            f"{s.server_cpu_ms_per_request:>14.2f} {s.requests:>8} {s.errors:>6} "
            f"{s.loadgen_cpu_percent:>6.0f}%"
        )
    print("-" * len(header))

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    print(
        f"{'Tendril / baseline':<34} {ratio(tendril.rps, baseline.rps):>7.2f} "
        f"{ratio(tendril.percentile_ms(0.5), baseline.percentile_ms(0.5)):>7.2f} "
        f"{ratio(tendril.percentile_ms(0.99), baseline.percentile_ms(0.99)):>7.2f} "
        f"{ratio(tendril.server_cpu_ms_per_request, baseline.server_cpu_ms_per_request):>14.2f}"
    )
    for name, s in (("baseline", baseline), ("Tendril", tendril)):
        if s.first_error:
            print(f"first {name} error: {s.first_error}")


def cmd_run(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))
    from tests.fakes.loopback import run_asgi_on_loopback
    from tests.fakes.slack import FakeSlack

    env = _clean_env()
    per_round = args.duration / args.rounds
    with tempfile.TemporaryDirectory(prefix="tendril-bench-") as tmp_name:
        tmp = Path(tmp_name)
        slack = FakeSlack()
        slack.add_token(SLACK_TOKEN)
        baseline_port, tendril_port = _free_port(), _free_port()
        tendril_url = f"http://127.0.0.1:{tendril_port}"
        baseline_cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_baseline",
            "--port",
            str(baseline_port),
            "--mode",
            args.baseline_mode,
        ]
        tendril_cmd = [sys.executable, "-m", "server.cli", "serve"]
        with (
            (tmp / "baseline.log").open("w") as baseline_log,
            (tmp / "tendril.log").open("w") as tendril_log,
            run_asgi_on_loopback(slack.app) as slack_url,
        ):
            tendril_env = {
                **env,
                "TENDRIL_DATA_DIR": str(tmp / "data"),
                "TENDRIL_PORT": str(tendril_port),
                "TENDRIL_PUBLIC_URL": tendril_url,
                "TENDRIL_SLACK_API_BASE": f"{slack_url}/api/",
                "TENDRIL_LOG_LEVEL": args.log_level,
                # Far above the load: every call is counted against the agent's limit, none refused.
                "TENDRIL_AGENT_TOOL_CALL_RATE_LIMIT": "1000000000",
            }
            with (
                _process(baseline_cmd, env=env, cwd=tmp, log=baseline_log) as baseline,
                # cwd=tmp: no developer .env is picked up.
                _process(tendril_cmd, env=tendril_env, cwd=tmp, log=tendril_log, read_stdout=True) as tendril,
            ):
                try:
                    admin_key = _read_admin_key(tendril)
                    _wait_listening(baseline_port, baseline, "baseline")
                    _wait_listening(tendril_port, tendril, "tendril serve")
                    agent_key = asyncio.run(_set_up_tendril(tendril_url, admin_key))
                    targets = [
                        Target(
                            "baseline", f"http://127.0.0.1:{baseline_port}/mcp", None, "echo", ECHO_ARGS,
                            baseline.pid,
                        ),
                        Target(
                            "Tendril", f"{tendril_url}/mcp", agent_key, "slack_post_message", SLACK_ARGS,
                            tendril.pid,
                        ),
                    ]  # fmt: skip
                    print(
                        f"baseline on :{baseline_port}, Tendril on :{tendril_port}, fake Slack at {slack_url}"
                    )
                    for round_no in range(1, args.rounds + 1):
                        for target in targets:
                            print(
                                f"round {round_no}/{args.rounds}: {target.name} for {per_round:g}s",
                                flush=True,
                            )
                            target.summary.add(_run_load(env, target, per_round, args))
                except Exception:
                    for log in (baseline_log, tendril_log):
                        log.flush()
                        print(f"--- {log.name} ---\n{Path(log.name).read_text()}", file=sys.stderr)
                    raise
        posted = len(slack.messages)
    _print_table(targets[0].summary, targets[1].summary, args)
    print(f"fake Slack stored {posted} messages (warm-up included)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--duration", type=float, default=8.0, help="measured seconds per server (default 8)")
    add("--concurrency", type=int, default=16, help="concurrent sessions/workers (default 16)")
    add("--rounds", type=int, default=2, help="alternating rounds sharing --duration (default 2)")
    add("--warmup", type=float, default=1.0, help="unmeasured seconds per round (default 1)")
    add("--client", choices=["raw", "httpx"], default="raw", help="load generator's HTTP client")
    add("--log-level", default="WARNING", help="Tendril's TENDRIL_LOG_LEVEL (INFO writes the access log)")
    add(
        "--baseline-mode",
        choices=BASELINE_MODES,
        default=BASELINE_MODES[0],
        help="stateful-sse (default) is how Tendril serves; stateless-json is the reference table's setup",
    )
    parser.set_defaults(func=cmd_run)
    return parser


def _role_parser(role: str) -> argparse.ArgumentParser:
    """The internal roles this script runs itself as, in subprocesses of `cmd_run`."""
    parser = argparse.ArgumentParser(prog=f"mcp_throughput.py {role}")
    add = parser.add_argument
    if role == "_load":
        add("--url", required=True)
        add("--token")
        add("--tool", required=True)
        add("--arguments", default="{}")
        add("--duration", type=float, default=8.0)
        add("--concurrency", type=int, default=16)
        add("--warmup", type=float, default=1.0)
        add("--client", choices=["raw", "httpx"], default="raw")
        add("--server-pid", type=int)
        parser.set_defaults(func=cmd_load)
    else:
        add("--port", type=int, required=True)
        add("--mode", choices=BASELINE_MODES, default=BASELINE_MODES[0])
        parser.set_defaults(func=cmd_baseline)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_load", "_baseline"):
        args = _role_parser(argv[0]).parse_args(argv[1:])
    else:
        args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
