"""libHeaSecReadInfo.so's cost: Init's JSON validation (Jansson) and ReadCardBas vs libSSCardDriver.

    .venv/bin/python benchmarks/heasec.py [--reader R] [--rounds N] [--json PATH]

No pcscd: the in-process simulator (``--reader sim:typical``) behind ``python -m
sscard.native_socket`` on a temporary socket, both libraries loaded with ctypes into this process:

* **Init**: ``Init(json, err)`` for the complete JSON of docs/native.md, ``rounds`` × 50 calls
  (Jansson parses it, every key is checked, the settings swapped under the mutex);
* **ReadCardBas** through libHeaSecReadInfo.so vs **iReadCardBas** through libSSCardDriver.so,
  alternating, same server (the same socket operation: the difference is the library's own);
* the size on disk of both libraries and of libjansson, and the process's RSS growth when
  libHeaSecReadInfo.so (with libjansson) is loaded.

Printed: medians.  A benchmark: exits 0 whatever the figures.  See docs/native.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "native" / "build"
INIT = {
    "IP": "127.0.0.1",
    "PORT": 8080,
    "TIMEOUT": 30,
    "LOG_PATH": "/var/log/his",
    "EC_URL": "https://ec.example/ec/query",
    "CARD_PASSTYPE": "1",
    "API_NAME": "hsa.read",
    "API_VERSION": "1.0.0",
    "ACCESS_KEY": "ak",
    "SECRETKEY": "sk",
    "ORG_ID": "H11010100001",
    "AREA_CODE": "110100",
    "EXT": {"dept": "门诊"},
}


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    reader, rounds, json_path = "sim:typical", 200, None
    while args:
        name, value = args.pop(0), args.pop(0)
        if name == "--reader":
            reader = value
        elif name == "--rounds":
            rounds = int(value)
        elif name == "--json":
            json_path = value
    subprocess.run(["make", "-C", str(ROOT / "native"), "-s"], check=True)
    before = _rss_kib()
    heasec = ctypes.CDLL(str(BUILD / "libHeaSecReadInfo.so"))
    loaded_kib = _rss_kib() - before
    driver = ctypes.CDLL(str(BUILD / "libSSCardDriver.so"))
    heasec.Init.restype = heasec.ReadCardBas.restype = driver.iReadCardBas.restype = ctypes.c_long
    driver.iReadCardBas.argtypes = [ctypes.c_int, ctypes.c_char_p]
    err = ctypes.create_string_buffer(2048)
    text = json.dumps(INIT, ensure_ascii=False).encode()
    init_us: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(50):
            heasec.Init(text, err)
        init_us.append((time.perf_counter() - began) / 50 * 1e6)
    assert heasec.Init(text, err) == 0, err.value

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
            info, busi, out = (ctypes.create_string_buffer(n) for n in (2048, 8192, 1024))
            sides: tuple[list[float], list[float]] = ([], [])
            for i in range(rounds + 10):
                for side in (0, 1) if i % 2 else (1, 0):
                    began = time.perf_counter()
                    rc = heasec.ReadCardBas(info, busi) if side == 0 else driver.iReadCardBas(3, out)
                    took = time.perf_counter() - began
                    assert rc == 0
                    if i >= 10:
                        sides[side].append(took * 1000)
            assert info.value == out.value
        finally:
            server.terminate()
            server.wait(10)
    jansson = ctypes.util.find_library("jansson")
    jansson_path = next(
        (p for p in (Path("/usr/lib/x86_64-linux-gnu"), Path("/lib")) if (p / str(jansson)).exists()), None
    )
    sizes = {
        "libHeaSecReadInfo.so": (BUILD / "libHeaSecReadInfo.so").stat().st_size,
        "libSSCardDriver.so": (BUILD / "libSSCardDriver.so").stat().st_size,
        str(jansson): (jansson_path / str(jansson)).resolve().stat().st_size if jansson_path else 0,
    }
    figures = {
        "reader": reader,
        "rounds": rounds,
        "init_us": statistics.median(init_us),
        "readcardbas_heasec_ms": statistics.median(sides[0]),
        "ireadcardbas_driver_ms": statistics.median(sides[1]),
        "sizes": sizes,
        "rss_on_load_kib": loaded_kib,
    }
    print(f"reader {reader}, {rounds} rounds")
    print(f"  Init (Jansson parse + checks)           {figures['init_us']:8.1f} µs median")
    print(f"  ReadCardBas via libHeaSecReadInfo.so    {figures['readcardbas_heasec_ms']:8.2f} ms median")
    print(f"  iReadCardBas via libSSCardDriver.so     {figures['ireadcardbas_driver_ms']:8.2f} ms median")
    for name, size in sizes.items():
        print(f"  {name:<38}  {size / 1024:8.1f} KiB on disk")
    print(f"  RSS growth loading libHeaSecReadInfo.so {loaded_kib:8d} KiB (with libjansson)")
    if json_path is not None:
        Path(json_path).write_text(json.dumps(figures), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
