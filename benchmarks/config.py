"""Configuration loading at start-up: what ``sscard.config`` costs a fresh process, and what a
schema library would cost instead (issue 11 items 9 and 14, docs/performance.md "Configuration").

    .venv/bin/python benchmarks/config.py [--quick] [--rounds N] [--src OTHER/src]

No card and no pcscd.  Every figure is taken in a fresh interpreter (the way the command line
starts), with bytecode cached (``PYTHONDONTWRITEBYTECODE`` is removed from the children's
environment and the sources compiled first), after importing the standard modules the command
line loads anyway (argparse, json, logging, dataclasses, typing, pathlib, re), so a figure is what
the configuration adds.  Rows:

* ``sscard.config`` import + ``load_config`` with no file, and with a file that sets every key;
* each schema library that the running interpreter can import (msgspec, pydantic, jsonschema,
  fastjsonschema, cerberus, voluptuous): its import alone.  They are not sscard dependencies: to
  measure them, run this script with an interpreter that has them (a throwaway venv with sscard's
  ``src`` on ``PYTHONPATH``).  Absent ones are listed as such.

``--src`` measures another checkout's ``src`` (e.g. before a change) in the same run: alternating
with this one, so both see the same machine load.  A benchmark: exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PRELUDE = "import argparse, json, logging, dataclasses, typing, pathlib, re, os, sys, collections.abc, time"
CANDIDATES = ("msgspec", "pydantic", "jsonschema", "fastjsonschema", "cerberus", "voluptuous")

FULL = """
[reader]
name = "ACR1281"
contactless = "PICC"
sam = "SAM"
itype = 3
busy_wait = 2.0
[reader.slots]
sam_keywords = ["SAM"]
contactless_keywords = ["PICC", "Contactless", "CL"]
[terminal]
id = "410100813475"
device_id = "MT170701000006"
[keys]
service = "psam"
profile = "default"
authenticate_card = true
[session]
require_pin = true
idle_timeout = 300
key = "/etc/sscard/terminal-key.pem"
token_ttl = 300
public_key = "/etc/sscard/terminal-key.pub"
leeway = 30
[qr]
port = "/dev/sscard-qr"
baudrate = 9600
terminator = "CR"
dedup_window = 2.0
[idcard]
port = "/dev/sscard-idcard"
baudrate = 115200
[service]
allowed_origins = ["http://127.0.0.1:8765"]
queue_timeout = 10
header_timeout = 10
body_timeout = 10
max_connections = 256
[logging]
show_personal_data = false
"""


def _child_env(src: Path = SRC) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["SSCARD_CONFIG"] = ""
    return env


def _time_ms(code: str, rounds: int, cwd: str, srcs: Sequence[Path] = (SRC,)) -> list[list[float]]:
    """Milliseconds ``code`` takes after PRELUDE, each in a fresh interpreter (one warm-up run),
    for each of ``srcs`` in turn, round after round."""
    script = f"{PRELUDE}\nt = time.perf_counter()\n{code}\nprint((time.perf_counter() - t) * 1000)\n"
    command = [sys.executable, "-c", script]
    for src in srcs:
        subprocess.run(command, env=_child_env(src), cwd=cwd, capture_output=True, check=True)
    runs: list[list[float]] = [[] for _ in srcs]
    for _ in range(rounds):
        for index, src in enumerate(srcs):
            done = subprocess.run(command, env=_child_env(src), cwd=cwd, capture_output=True, text=True, check=True)
            runs[index].append(float(done.stdout.split()[-1]))
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds: a smoke test, not figures to quote")
    parser.add_argument("--rounds", type=int, default=15, help="fresh processes per row (default 15)")
    parser.add_argument("--src", type=Path, help="also measure this checkout's src directory (before/after)")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    srcs = [SRC] if args.src is None else [SRC, args.src.resolve()]
    for src in srcs:
        compileall.compile_dir(str(src), quiet=1)
    rows: list[tuple[str, list[float] | None]] = []
    with tempfile.TemporaryDirectory(prefix="sscard-bench-config-") as workdir:
        full = Path(workdir) / "full.toml"
        full.write_text(FULL, encoding="utf-8")
        empty = Path(workdir) / "xdg"
        empty.mkdir()
        env = f"{{'XDG_CONFIG_HOME': {str(empty)!r}}}"
        loads = {
            "no file": f"import sscard.config as c; c.load_config(env={env})",
            "every key set": f"import sscard.config as c; c.load_config({str(full)!r}, env={{}})",
        }
        for what, code in loads.items():
            for src, runs in zip(srcs, _time_ms(code, rounds, workdir, srcs), strict=True):
                where = "" if src == SRC else f" [{src}]"
                rows.append((f"sscard.config: import + load_config, {what}{where}", runs))
        for name in CANDIDATES:
            if importlib.util.find_spec(name) is None:
                rows.append((f"{name}: import (not installed here)", None))
                continue
            rows.append((f"{name}: import", _time_ms(f"import {name}", rounds, workdir)[0]))
    print(f"Configuration loading in a fresh process, ms after the CLI's stdlib imports ({rounds} rounds)")
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
