"""Masking a log line against the secrets a process has opened: the Aho-Corasick automaton
(auth.redaction.SecretRegistry) against a regex alternation of the same forms (what it replaced).

    python bench/redaction.py [--lines 20000]

Printed per number of registered secrets: microseconds per line for each, and the ratio.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auth.redaction import MASK, SecretRegistry, secret_forms

LINE = "2026-12-03 10:00:00,000 WARNING tendril.runtime: slack answered 429 to chat.postMessage, retry in 2 s"


def per_line_us(redact: Callable[[str], str], lines: int) -> float:
    started = time.perf_counter()
    for _ in range(lines):
        redact(LINE)
    return (time.perf_counter() - started) / lines * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{'secrets':>8} {'automaton us/line':>18} {'regex us/line':>14} {'regex/automaton':>16}")
    for count in (10, 100, 1_000, 3_000):
        registry = SecretRegistry()
        forms: set[str] = set()
        for _ in range(count):
            secret = secrets.token_urlsafe(24)
            registry.register(secret)
            forms |= secret_forms(secret)
        ordered = sorted(forms, key=len, reverse=True)
        alternation = re.compile("|".join(re.escape(form) for form in ordered))
        registry.redact(LINE)  # builds the automaton
        automaton = per_line_us(registry.redact, args.lines)
        # The regex is slow with many secrets: fewer lines for it.
        regex = per_line_us(partial(alternation.sub, MASK), max(200, args.lines // count))
        print(f"{count:>8} {automaton:>18.1f} {regex:>14.1f} {regex / automaton:>15.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
