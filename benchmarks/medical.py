"""E-voucher resolution (issue 14, docs/medical.md "Why no HTTP library"): what the standard
library's HTTP client costs a fresh process next to the HTTP libraries the interpreter has, and
one ``ec.query`` round trip against a simulated platform on 127.0.0.1.

    .venv/bin/python benchmarks/medical.py [--quick] [--rounds N]

No card and no pcscd.  Import figures are taken in a fresh interpreter each, after the standard
modules the command line loads anyway (json, logging, dataclasses, typing, pathlib, re), with
bytecode cached; the candidates (httpx, urllib3, requests, aiohttp) are measured only where
importable.  The round trip is :meth:`sscard.medical.HttpEcResolver.resolve` in this process
against a ``http.server`` thread answering the documented JSON-inside-JSON answer: the client's
share of a real call, whose network and platform time it cannot show.  A benchmark: exits 0
whatever the figures.
"""

from __future__ import annotations

import argparse
import compileall
import http.server
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
PRELUDE = "import json, logging, dataclasses, typing, pathlib, re, os, sys, collections.abc, time"
CANDIDATES = ("httpx", "urllib3", "requests", "aiohttp")
PERSON = {"idNo": "110101198503071235", "idType": "01", "userName": "张三", "ecToken": "ec-token-0001"}


def _time_ms(code: str, rounds: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    script = f"{PRELUDE}\nt = time.perf_counter()\n{code}\nprint((time.perf_counter() - t) * 1000)\n"
    command = [sys.executable, "-c", script]
    subprocess.run(command, env=env, capture_output=True, check=True)  # warm-up: bytecode, page cache
    runs = []
    for _ in range(rounds):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        runs.append(float(done.stdout.split()[-1]))
    return runs


def _platform() -> tuple[http.server.ThreadingHTTPServer, str]:
    body = json.dumps({"code": 0, "message": "成功", "data": json.dumps(PERSON, ensure_ascii=False)}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/ec"


def _round_trips(count: int) -> list[float]:
    sys.path.insert(0, str(SRC))
    from sscard.medical import HttpEcResolver

    server, url = _platform()
    try:
        resolver = HttpEcResolver(url, timeout=5, org_id="H41010000001")
        resolver.resolve("4243754826492874240001130000")  # warm-up
        runs = []
        for _ in range(count):
            started = time.perf_counter()
            resolver.resolve("4243754826492874240001130000")
            runs.append((time.perf_counter() - started) * 1000)
        return runs
    finally:
        server.shutdown()
        server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds: a smoke test, not figures to quote")
    parser.add_argument("--rounds", type=int, default=15, help="fresh processes per import row (default 15)")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    compileall.compile_dir(str(SRC), quiet=1)
    rows: list[tuple[str, list[float] | None]] = [
        ("stdlib http.client + ssl (sscard.medical.ec's stack): import", _time_ms("import http.client, ssl", rounds)),
        (
            "sscard.medical (the package, with the facade it builds on): import",
            _time_ms("import sscard.medical", rounds),
        ),
    ]
    for name in CANDIDATES:
        if importlib.util.find_spec(name) is None:
            rows.append((f"{name}: import (not installed here)", None))
        else:
            rows.append((f"{name}: import", _time_ms(f"import {name}", rounds)))
    rows.append(("ec.query round trip, 127.0.0.1 (HttpEcResolver.resolve)", _round_trips(10 if args.quick else 200)))
    print(f"E-voucher resolution: ms ({rounds} fresh processes per import row)")
    width = max(len(label) for label, _ in rows)
    print(f"{'':{width}} {'median':>8} {'min':>8}")
    for label, figures in rows:
        if figures is None:
            print(f"{label:{width}} {'-':>8} {'-':>8}")
        else:
            print(f"{label:{width}} {statistics.median(figures):8.2f} {min(figures):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
