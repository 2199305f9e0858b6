"""libSSCardDriver.so's cost: iReadCardBas through the library vs in process vs as a process.

    .venv/bin/python benchmarks/native.py [--reader R | --slot S] [--rounds N] [--json PATH]

Same card on each side: the in-process simulator (``--reader sim:typical``, the default), or
``--slot S``: the simulated card served from a process of its own into vpcd slot S, read through
the real pcscd (run it under the pcscd lock):

* **library**: ``iReadCardBas(3, buf)`` through ``native/build/libSSCardDriver.so`` (ctypes, so
  the client side is the C library itself) against ``python -m sscard.native_socket`` running as
  a process of its own on a temporary socket: connect, request, the server's ``Terminal.read()``,
  answer;
* **in process**: ``Terminal.read()`` + ``ireadcardbas()`` on a terminal opened once;
* **process**: ``sscard read --format ireadcardbas`` started each time.

Printed: medians and the library's addition over the in-process read (goal ≤ 3 ms).  A benchmark:
exits 0 whatever the figure.  See docs/native.md and docs/performance.md.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "native" / "build" / "libSSCardDriver.so"
GOAL_MS = 3.0


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    reader, rounds, slot, json_path = "sim:typical", 200, None, None
    while args:
        name, value = args.pop(0), args.pop(0)
        if name == "--reader":
            reader = value
        elif name == "--rounds":
            rounds = int(value)
        elif name == "--slot":
            slot = int(value)
        elif name == "--json":
            json_path = value
    if slot is not None:
        from common import CardServer, vpcd_reader_name

        from sscard.sim import VpcdLink

        reader = vpcd_reader_name(slot)
        with CardServer("typical", [VpcdLink.port_for_slot(slot)]):
            _wait_for_card(reader)
            return _bench(reader, rounds, json_path)
    return _bench(reader, rounds, json_path)


def _wait_for_card(reader: str, timeout: float = 20.0) -> None:
    from sscard.errors import SscardError
    from sscard.terminal import Terminal

    deadline = time.monotonic() + timeout
    while True:
        try:
            with Terminal.open(reader) as terminal:
                terminal.read()
            return
        except SscardError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _bench(reader: str, rounds: int, json_path: str | None = None) -> int:
    subprocess.run(["make", "-C", str(ROOT / "native"), "-s"], check=True)
    from sscard.national import ireadcardbas
    from sscard.terminal import Terminal

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.sock")
        server = subprocess.Popen(
            [sys.executable, "-m", "sscard.native_socket", "--socket", path, "--reader", reader],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and "listening" in server.stdout.readline()
            os.environ["SSCARD_SOCKET"] = path
            lib = ctypes.CDLL(str(LIB))
            lib.iReadCardBas.argtypes = [ctypes.c_int, ctypes.c_char_p]
            lib.iReadCardBas.restype = ctypes.c_long
            buf = ctypes.create_string_buffer(1024)
            library: list[float] = []
            inproc: list[float] = []
            with Terminal.open(reader) as terminal:
                for i in range(rounds + 10):
                    order = (0, 1) if i % 2 else (1, 0)  # alternate which side goes first
                    for side in order:
                        began = time.perf_counter()
                        if side == 0:
                            rc = lib.iReadCardBas(3, buf)
                            assert rc == 0, (rc, buf.value)
                        else:
                            ireadcardbas(terminal.read("ssc"), terminal.config.terminal_id, terminal.config.device_id)
                        took = time.perf_counter() - began
                        if i >= 10:  # warm-up
                            (library if side == 0 else inproc).append(took)
            process: list[float] = []
            for _ in range(max(5, rounds // 20)):
                began = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "sscard", "read", "--reader", reader, "--format", "ireadcardbas"],
                    check=True,
                    capture_output=True,
                )
                process.append(time.perf_counter() - began)
        finally:
            server.terminate()
            server.wait(10)
    lib_ms, in_ms, proc_ms = _median_ms(library), _median_ms(inproc), _median_ms(process)
    added = lib_ms - in_ms
    print(f"reader {reader}, {rounds} rounds (process: {len(process)})")
    print(f"  iReadCardBas via libSSCardDriver.so   {lib_ms:8.2f} ms median")
    print(f"  Terminal.read() in process            {in_ms:8.2f} ms median")
    print(f"  sscard read --format ireadcardbas     {proc_ms:8.2f} ms median (a process each time)")
    verdict = "met" if added <= GOAL_MS else "MISSED"
    print(f"  library adds {added:+.2f} ms to an in-process read (goal ≤ {GOAL_MS:g} ms: {verdict})")
    if json_path is not None:
        import json

        figures = {"reader": reader, "rounds": rounds, "library_ms": lib_ms, "in_process_ms": in_ms}
        figures |= {"process_ms": proc_ms, "added_ms": added, "goal_ms": GOAL_MS, "verdict": verdict}
        Path(json_path).write_text(json.dumps(figures), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
