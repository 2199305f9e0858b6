"""libHeaSecReadInfo.so end to end (issue 14 item 3, docs/native.md): a C program that knows only
HeaSecReadInfo.h (tests/native/heasec.c) dlopens the real library, which talks to the real socket
server over a temporary Unix socket.

In-process tests serve ``sim:`` readers with the simulated ID-card reader on a real pty; the
``pcscd`` test runs ``sscard serve --socket`` as a process on the vpcd reader with the simulated
card inserted, PINs answered through ``POST /v1/pin-entry``.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sscard.config import Config
from sscard.native_socket import Request, encode_parts
from sscard.native_socket.heasec import SFZ_FIELDS
from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard
from test_native import NATIVE, Served, cli_line, native, pin_events, serve
from test_native_serve import sscard_serve

__all__ = ["native", "serve", "sscard_serve"]  # fixtures shared with test_native.py, test_native_serve.py

LIB = NATIVE / "build" / "libHeaSecReadInfo.so"
ASAN_LIB = NATIVE / "build" / "asan" / "libHeaSecReadInfo.so"
FUNCTIONS = ("Init", "ReadCardBas", "VerifyPIN", "ChangePIN", "ReadSFZ", "GetPersonInfo")
CARD_CALLS = ("ReadCardBas", "VerifyPIN", "ChangePIN", "ReadSFZ", "GetPersonInfo")

#: A complete Init JSON (docs/card-reference.md §7); SECRETKEY is checked never to come back.
GOOD: dict[str, Any] = {
    "IP": "127.0.0.1",
    "PORT": 8080,
    "TIMEOUT": 5,
    "LOG_PATH": "/var/log/his",
    "EC_URL": "",
    "CARD_PASSTYPE": "2",
    "API_NAME": "hsa.read",
    "API_VERSION": "1.0.0",
    "ACCESS_KEY": "ak-7f3a",
    "SECRETKEY": "sk-do-not-echo-91c2",
    "ORG_ID": "H11010100001",
    "AREA_CODE": "110100",
}
STRING_KEYS = [k for k, v in GOOD.items() if isinstance(v, str)]
NUMBER_KEYS = [k for k, v in GOOD.items() if not isinstance(v, str)]

#: The pOutBuff line of the zhangsan persona, written out by hand (§7's order, dates YYYYMMDD).
ZHANGSAN = "张三|男|汉族|19850307|北京市东城区景山前街4号|110101198503071235|20150618|20350618|北京市公安局东城分局|"
LISI = (
    "李四|女|回族|19620815|广东省深圳市福田区福华一路1号福田中心区市民中心大厦A区123456室|"
    "440304196208156428|20100901|长期|深圳市公安局福田分局|"
)


def init(**changes: Any) -> str:
    data = {**GOOD, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...}, ensure_ascii=False)


@pytest.fixture(scope="session")
def heasec(native: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tests/native/heasec.c, plain and ASan/UBSan (the libraries are built by ``native``)."""
    out = tmp_path_factory.mktemp("heasec")
    flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{NATIVE / 'include'}"]
    asan = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
    progs = {}
    for name, extra in (("heasec", []), ("heasec_asan", asan)):
        src = Path(__file__).parent / "native" / "heasec.c"
        subprocess.run(["gcc", *flags, *extra, "-o", str(out / name), str(src), "-ldl", "-lpthread"], check=True)
        progs[name] = out / name
    return progs


Result = tuple[int, bytes, bytes]


def run_heasec(prog: Path, lib: Path, *calls: str, env: dict[str, str] | None = None) -> list[Result]:
    """Run the driver with a sequence of calls; [(rc, first buffer, business buffer)] per call."""
    proc = subprocess.run(
        [str(prog), str(lib), *calls],
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"AddressSanitizer" not in proc.stderr and b"runtime error" not in proc.stderr, proc.stderr
    assert b"LeakSanitizer" not in proc.stderr, proc.stderr
    results: list[Result] = []
    data = proc.stdout
    while data:
        header, _, data = data.partition(b"\n")
        rc, l1, l2 = (int(x) for x in header.split(b"\t"))
        results.append((rc, data[:l1], data[l1 : l1 + l2]))
        data = data[l1 + l2 :]
    return results


@pytest.fixture
def idcard_reader(tmp_path: Path) -> Iterator[SimulatedIdCardReader]:
    with SimulatedIdCardReader(link=tmp_path / "sscard-idcard") as reader:
        yield reader


def kiosk(idcard_reader: SimulatedIdCardReader) -> Config:
    return Config(idcard_port=str(idcard_reader.path))


# -- Init -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_every_call_before_init_is_an_error_with_a_message(
    heasec: dict[str, Path], tmp_path: Path, encoding: str
) -> None:
    env = {"SSCARD_SOCKET": str(tmp_path / "none.sock")}
    if encoding == "utf-8":
        env["SSCARD_NATIVE_ENCODING"] = "utf-8"
    calls = ["ReadCardBas", "VerifyPIN", "ChangePIN", "ReadSFZ", "", "GetPersonInfo", "{}"]
    results = run_heasec(heasec["heasec"], LIB, *calls, env=env)
    assert len(results) == 5
    for rc, out, busi in results:
        # −14, not −11: the library says what is wrong before it tries the (absent) service
        assert rc == -14 and busi == b""
        assert out == "未初始化，请先调用Init / not initialised: call Init first".encode(encoding)


def test_a_good_init_answers_0_and_an_empty_message(heasec: dict[str, Path]) -> None:
    [(rc, err, _)] = run_heasec(heasec["heasec"], LIB, "Init", init())
    assert rc == 0 and err == b""


def test_ext_is_optional_of_any_type_and_unknown_keys_are_ignored(heasec: dict[str, Path]) -> None:
    for text in (
        init(EXT="x"),
        init(EXT={"dept": "门诊", "n": [1, 2]}),
        init(EXT=None),
        init(NEW_IN_A_LATER_SPEC="whatever", ANOTHER=3),
        init(EC_URL="https://ec.example/ec/query"),
        init(CARD_PASSTYPE="1", TIMEOUT=0.5, PORT=0),
    ):
        [(rc, err, _)] = run_heasec(heasec["heasec"], LIB, "Init", text)
        assert (rc, err) == (0, b""), text


@pytest.mark.parametrize("key", list(GOOD))
def test_init_without_each_required_key_names_it(heasec: dict[str, Path], key: str) -> None:
    [(rc, err, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(**{key: ...}))
    assert rc == -14
    assert err == f"初始化参数缺少必填项 / pInitInfo lacks the key {key}".encode("gbk")


@pytest.mark.parametrize("key", list(GOOD))
def test_init_with_a_wrong_type_names_the_key_and_the_type(heasec: dict[str, Path], key: str) -> None:
    wrong: Any = "30" if key in NUMBER_KEYS else 30
    [(rc, err, _)] = run_heasec(
        heasec["heasec"], LIB, "Init", init(**{key: wrong}), env={"SSCARD_NATIVE_ENCODING": "utf-8"}
    )
    expected = "number" if key in NUMBER_KEYS else "string"
    assert rc == -14
    assert err.decode() == f"初始化参数类型错误 / pInitInfo has the wrong type for {key} (expected a {expected})"
    for other in (None, True, [1], {"a": 1}):
        [(rc, err, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(**{key: other}))
        assert rc == -14 and b"wrong type" in err, (key, other)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"PORT": 70000}, "PORT (an integer 0 to 65535)"),
        ({"PORT": -1}, "PORT (an integer 0 to 65535)"),
        ({"PORT": 80.5}, "PORT (an integer 0 to 65535)"),
        ({"TIMEOUT": 0}, "TIMEOUT (seconds, more than 0 and at most 600)"),
        ({"TIMEOUT": -3}, "TIMEOUT (seconds, more than 0 and at most 600)"),
        ({"TIMEOUT": 601}, "TIMEOUT (seconds, more than 0 and at most 600)"),
        ({"CARD_PASSTYPE": "3"}, 'CARD_PASSTYPE ("1" or "2")'),
        ({"CARD_PASSTYPE": ""}, 'CARD_PASSTYPE ("1" or "2")'),
        ({"ORG_ID": "H" * 1025}, "a string value (at most 1024 bytes)"),
    ],
)
def test_init_with_a_bad_value_says_which(heasec: dict[str, Path], changes: dict[str, Any], why: str) -> None:
    [(rc, err, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(**changes))
    assert rc == -14 and err == f"初始化参数取值错误 / pInitInfo has a bad value for {why}".encode("gbk")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1, 2]",
        '"a string"',
        init()[:-1],  # cut off
        init().replace('"IP"', '"PORT"', 1),  # a duplicate key
        '{"IP": "1", "SECRETKEY": sk-do-not-echo-91c2}',  # the error is near the secret
        "NULL",
    ],
)
def test_init_with_bad_json_is_refused_without_echoing_it(heasec: dict[str, Path], text: str) -> None:
    [(rc, err, _)] = run_heasec(heasec["heasec"], LIB, "Init", text)
    assert rc == -14 and err.startswith("初始化参数不是有效的JSON对象 / pInitInfo is not a JSON object: ".encode("gbk"))
    assert b"sk-do-not-echo" not in err and b"near" not in err


def test_init_json_is_utf8_a_gbk_byte_string_is_refused(heasec: dict[str, Path]) -> None:
    raw = init(LOG_PATH="/var/log/医保").encode("gbk")
    proc = subprocess.run([str(heasec["heasec"]), str(LIB), "Init", raw], capture_output=True, check=True)  # type: ignore[list-item]
    assert proc.stdout.startswith(b"-14\t") and b"JSON" in proc.stdout
    [(rc, _, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(LOG_PATH="/var/log/医保"))
    assert rc == 0  # UTF-8 (or \\u escapes) is JSON's own encoding, in either output mode


def test_a_failed_init_leaves_the_library_uninitialised(heasec: dict[str, Path], tmp_path: Path) -> None:
    env = {"SSCARD_SOCKET": str(tmp_path / "none.sock")}
    results = run_heasec(heasec["heasec"], LIB, "Init", init(), "ReadCardBas", "Init", "{}", "ReadCardBas", env=env)
    assert [r[0] for r in results] == [0, -11, -14, -14]
    assert results[3][1].startswith("未初始化".encode("gbk"))


def test_null_buffers_are_minus_14_and_nothing_is_written(heasec: dict[str, Path]) -> None:
    calls = ["Init", init(), "Init:NULL", init(), *[f"{c}:NULL" for c in ("ReadCardBas", "VerifyPIN", "ChangePIN")]]
    calls += ["ReadSFZ:NULL", "", "GetPersonInfo:NULL", "{}"]
    results = run_heasec(heasec["heasec"], LIB, *calls)
    assert [r[0] for r in results] == [0, 0, -14, -14, -14, -14, -14]  # Init's pErrMsg may be NULL


# -- the card calls through the socket ------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_readcardbas_is_the_ireadcardbas_line_byte_for_byte(
    heasec: dict[str, Path], serve: Callable[..., Served], encoding: str
) -> None:
    served = serve("sim:rare_char")
    env = {**served.env, **({"SSCARD_NATIVE_ENCODING": "utf-8"} if encoding == "utf-8" else {})}
    [_, (rc, info, busi)] = run_heasec(heasec["heasec"], LIB, "Init", init(), "ReadCardBas", env=env)
    assert rc == 0
    assert info == cli_line("sim:rare_char").encode("utf-8" if encoding == "utf-8" else "gb18030")
    assert busi == b""  # the platform's business string needs its keys: sscard writes ""


def test_readcardbas_asks_no_pin(heasec: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    [_, (rc, _, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(CARD_PASSTYPE="1"), "ReadCardBas", env=served.env)
    assert rc == 0 and served.events.empty()


def test_verify_and_change_pin_through_the_page(heasec: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    answered = [served.answer_next(pin="123456"), served.answer_next(pin="000000")]
    answered.append(served.answer_next(old="123456", new="654321"))
    results = run_heasec(
        heasec["heasec"], LIB, "Init", init(), "ReadCardBas", "VerifyPIN", "VerifyPIN", "ChangePIN", env=served.env
    )
    for thread in answered:
        thread.join(10)
    assert [r[0] for r in results] == [0, 0, 0, -51, 0]
    assert results[3][1] == "密码错误，还可尝试2次。".encode("gbk")


def test_readsfz_reads_the_simulated_id_card_reader(
    heasec: dict[str, Path], serve: Callable[..., Served], idcard_reader: SimulatedIdCardReader, tmp_path: Path
) -> None:
    served = serve("sim:typical", config=kiosk(idcard_reader))
    idcard_reader.place(load_idcard("zhangsan"))
    photo = tmp_path / "photo.wlt"
    for encoding in ("gbk", "utf-8"):
        env = {**served.env, "SSCARD_NATIVE_ENCODING": encoding}
        [_, (rc, out, busi)] = run_heasec(heasec["heasec"], LIB, "Init", init(), "ReadSFZ", str(photo), env=env)
        assert rc == 0, out.decode(encoding, errors="replace")
        assert out == ZHANGSAN.encode("gb18030" if encoding == "gbk" else "utf-8") and busi == b""
        assert len(out.decode("gb18030" if encoding == "gbk" else "utf-8").split("|")) == len(SFZ_FIELDS) + 1
    assert photo.read_bytes() == load_idcard("zhangsan").photo  # the raw WLT, 1024 bytes
    assert stat.S_IMODE(photo.stat().st_mode) == 0o600


def test_readsfz_long_term_card_and_no_photo(
    heasec: dict[str, Path], serve: Callable[..., Served], idcard_reader: SimulatedIdCardReader, tmp_path: Path
) -> None:
    served = serve("sim:typical", config=kiosk(idcard_reader))
    idcard_reader.place(load_idcard("lisi_long_term"))
    env = {**served.env, "SSCARD_NATIVE_ENCODING": "utf-8"}
    results = run_heasec(heasec["heasec"], LIB, "Init", init(), "ReadSFZ", "", "ReadSFZ", "NULL", env=env)
    assert [(rc, out.decode()) for rc, out, _ in results[1:]] == [(0, LISI), (0, LISI)]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["s0.sock", "sscard-idcard"]  # no photo written


def test_readsfz_into_a_directory_writes_photo_wlt_replacing_an_old_file(
    heasec: dict[str, Path], serve: Callable[..., Served], idcard_reader: SimulatedIdCardReader, tmp_path: Path
) -> None:
    served = serve("sim:typical", config=kiosk(idcard_reader))
    idcard_reader.place(load_idcard("zhangsan"))
    folder = tmp_path / "photos"
    folder.mkdir()
    old = folder / "photo.wlt"
    old.write_bytes(b"an older resident's photo, and longer than the new one" * 40)
    old.chmod(0o644)
    [_, (rc, _, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(), "ReadSFZ", str(folder), env=served.env)
    assert rc == 0 and old.read_bytes() == load_idcard("zhangsan").photo
    assert stat.S_IMODE(old.stat().st_mode) == 0o600  # a new file, not the old one's mode


def test_readsfz_refuses_a_symlinked_photo_path_before_reading_the_card(
    heasec: dict[str, Path], serve: Callable[..., Served], idcard_reader: SimulatedIdCardReader, tmp_path: Path
) -> None:
    served = serve("sim:typical", config=kiosk(idcard_reader))
    idcard_reader.place(load_idcard("zhangsan"))
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    link = tmp_path / "photo.wlt"
    link.symlink_to(target)
    env = {**served.env, "SSCARD_NATIVE_ENCODING": "utf-8"}
    [_, (rc, out, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(), "ReadSFZ", str(link), env=env)
    assert rc == -14 and out.decode().startswith("无法写入相片文件 / cannot write the photo file: ")
    assert target.read_bytes() == b"keep" and idcard_reader.requests == []  # the card was not read
    fifo = tmp_path / "fifo.wlt"
    os.mkfifo(fifo)
    for refused in (fifo, tmp_path / "no-such-dir" / "p.wlt", target / "p.wlt"):
        [_, (rc, out, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(), "ReadSFZ", str(refused), env=env)
        assert rc == -14 and out.decode().startswith(f"无法写入相片文件 / cannot write the photo file: {refused} ("), (
            refused
        )
    assert idcard_reader.requests == []


def test_readsfz_without_a_card_or_a_reader(
    heasec: dict[str, Path], serve: Callable[..., Served], idcard_reader: SimulatedIdCardReader
) -> None:
    served = serve("sim:typical", config=kiosk(idcard_reader))
    began = time.monotonic()
    [_, (rc, out, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(), "ReadSFZ", "", env=served.env)
    assert rc == -2 and out == "未检测到身份证，请将身份证放在读卡区。".encode("gbk")
    assert time.monotonic() - began < 5  # one attempt, no waiting for a card
    bare = serve("sim:typical", config=Config())
    [_, (rc, out, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(), "ReadSFZ", "", env=bare.env)
    assert rc == -13 and "未配置身份证阅读器".encode("gbk") in out
    idcard_reader.unplug()
    [_, (rc, _, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(), "ReadSFZ", "", env=served.env)
    assert rc == -11


def test_service_down_every_function_is_minus_11_within_a_second(heasec: dict[str, Path], tmp_path: Path) -> None:
    env = {"SSCARD_SOCKET": str(tmp_path / "gone.sock")}
    for call, arg in (
        ("ReadCardBas", None),
        ("VerifyPIN", None),
        ("ChangePIN", None),
        ("ReadSFZ", ""),
        ("GetPersonInfo", ""),
    ):
        began = time.monotonic()
        [_, (rc, out, _)] = run_heasec(
            heasec["heasec"], LIB, "Init", init(), call, *([arg] if arg is not None else []), env=env
        )
        assert rc == -11 and time.monotonic() - began < 1.0, call
        assert out.startswith("无法连接读卡服务".encode("gbk"))


def test_threads_share_the_settings_safely(heasec: dict[str, Path], serve: Callable[..., Served]) -> None:
    served = serve("sim:typical")
    for prog, lib in ((heasec["heasec"], LIB), (heasec["heasec_asan"], ASAN_LIB)):
        [_, (ok, _, _)] = run_heasec(prog, lib, "Init", init(), "Threads", "6", env=served.env)
        assert ok == 30  # 6 threads × 5 × (Init + ReadCardBas), every one answered


def test_the_library_under_asan_and_ubsan(
    heasec: dict[str, Path], serve: Callable[..., Served], idcard_reader: SimulatedIdCardReader, tmp_path: Path
) -> None:
    served = serve("sim:typical", config=kiosk(idcard_reader))
    idcard_reader.place(load_idcard("zhangsan"))
    env = {**served.env, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    thread = served.answer_next(pin="123456")
    calls = ["ReadCardBas", "Init", "[", "Init", init(EXT={"a": [1, {"b": None}]}), "ReadCardBas", "VerifyPIN"]
    calls += ["ReadSFZ", str(tmp_path / "p.wlt"), "ReadSFZ", str(tmp_path / "none" / "p.wlt"), "GetPersonInfo", "[1]"]
    calls += ["ReadCardBas:NULL", "Init", init(**{"PORT": ...})]
    results = run_heasec(heasec["heasec_asan"], ASAN_LIB, *calls, env=env)
    thread.join(10)
    assert [r[0] for r in results] == [-14, -14, 0, 0, 0, 0, -14, -14, -14, -14]
    small = {**env, "SSCARD_HEASEC_BUFFER_SIZE": "40"}
    results = run_heasec(heasec["heasec_asan"], ASAN_LIB, "Init", init(), "ReadCardBas", "ReadSFZ", "", env=small)
    assert [r[0] for r in results] == [0, -14, -14] and all(len(r[1]) <= 39 for r in results)
    down = {**env, "SSCARD_SOCKET": str(tmp_path / "gone")}
    results = run_heasec(heasec["heasec_asan"], ASAN_LIB, "Init", init(), *CARD_CALLS[:3], env=down)
    assert [r[0] for r in results] == [0, -11, -11, -11]


def test_ctypes_binds_by_name(
    native: dict[str, Path], serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stands in for the managed callers (C#, Java JNA) that bind the symbols by name."""
    served = serve("sim:typical")
    monkeypatch.setenv("SSCARD_SOCKET", served.server.path)
    lib = ctypes.CDLL(str(LIB))
    for name in FUNCTIONS:
        getattr(lib, name).restype = ctypes.c_long
    err = ctypes.create_string_buffer(2048)
    assert lib.Init(init().encode(), err) == 0 and err.value == b""
    info, busi = ctypes.create_string_buffer(2048), ctypes.create_string_buffer(b"x" * 100, 8192)
    assert lib.ReadCardBas(info, busi) == 0
    assert info.value == cli_line("sim:typical").encode("gb18030") and busi.value == b""
    assert lib.Init(b"{}", err) == -14 and "缺少".encode("gbk") in err.value


def test_only_the_six_functions_are_exported(native: dict[str, Path]) -> None:
    nm = subprocess.run(["nm", "-D", "--defined-only", str(LIB)], capture_output=True, text=True, check=True)
    assert {line.split()[-1] for line in nm.stdout.splitlines() if line.strip()} == set(FUNCTIONS)
    needed = subprocess.run(["readelf", "-d", str(LIB)], capture_output=True, text=True, check=True).stdout
    assert "libjansson.so" in needed and "libpython" not in needed


def test_install_and_pkg_config_build_a_program_that_knows_only_the_header(
    native: dict[str, Path], serve: Callable[..., Served], tmp_path: Path
) -> None:
    prefix = tmp_path / "prefix"
    subprocess.run(["make", "-C", str(NATIVE), "-s", "install", f"PREFIX={prefix}"], check=True)
    assert (prefix / "include/HeaSecReadInfo.h").exists() and (prefix / "lib/libHeaSecReadInfo.so").exists()
    pc_env = {**os.environ, "PKG_CONFIG_PATH": str(prefix / "lib/pkgconfig")}
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "heasecreadinfo"], capture_output=True, text=True, env=pc_env, check=True
    ).stdout.split()
    assert f"-L{prefix}/lib" in flags and "-lHeaSecReadInfo" in flags
    example = NATIVE / "examples" / "his_read.c"
    prog = tmp_path / "his_read"
    subprocess.run(
        [
            "gcc",
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            str(example),
            *flags,
            f"-Wl,-rpath,{prefix}/lib",
            "-o",
            str(prog),
        ],
        check=True,
    )
    served = serve("sim:typical")
    proc = subprocess.run(
        [str(prog), init()], capture_output=True, env={**os.environ, **served.env, "SSCARD_NATIVE_ENCODING": "utf-8"}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == cli_line("sim:typical").split("|")[1] + "\n"  # the SSN


def test_the_doc_shows_the_example_that_is_compiled() -> None:
    assert (NATIVE / "examples/his_read.c").read_text() in (NATIVE.parent / "docs/native.md").read_text()


# -- the wire -------------------------------------------------------------------------------------


def test_several_parts_on_the_wire() -> None:
    request = Request("ReadSFZ", "gbk", 64, 60.0, ("1",))
    assert encode_parts(0, ("张三|", "", b"\x00\xff"), request) == b"0\t5\t0\t2\n" + "张三|".encode("gbk") + b"\x00\xff"
    # a failure is its message alone; a text part that does not fit refuses the whole answer
    assert encode_parts(-2, ("无卡", "", b""), request) == b"-2\t4\n" + "无卡".encode("gbk")
    refused = encode_parts(0, ("x" * 64, "", b""), request)
    assert refused.startswith(b"-14\t") and refused.count(b"\t") == 1


# -- GetPersonInfo: any credential, the platform's fields -----------------------------------------

EVOUCHER = "4243754826492874240001130000"  # docs/card-reference.md §9
#: What the simulated platform resolves EVOUCHER to (its answer's data, JSON inside JSON).
EC_PERSON = {"ecToken": "ec-token-3f9d", "idNo": "110101199001011237", "idType": "01", "userName": "王五"}


class Platform:
    """A simulated medical insurance platform on 127.0.0.1: answers ec.query, keeps the requests."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.requests: list[dict[str, Any]] = []
        platform = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                platform.requests.append(json.loads(body))
                answer = {"code": 0, "message": "成功", "data": json.dumps(EC_PERSON, ensure_ascii=False)}
                raw = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ec/query"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def platform() -> Iterator[Platform]:
    served = Platform()
    yield served
    served.close()


@pytest.fixture
def qr_scanner(tmp_path: Path) -> Iterator[Any]:
    from sscard.sim.serial_qr import SimulatedQrScanner

    with SimulatedQrScanner(link=tmp_path / "sscard-qr") as scanner:
        yield scanner


@pytest.fixture
def front_desk(tmp_path: Path) -> Iterator[Callable[..., tuple[Served, Any]]]:
    """A socket server on a simulated SSC reader (empty unless ``persona``), with ``config``."""

    from sscard.native_socket import NativeSocketServer, PagePinSource
    from sscard.sim import SimulatedCard, load_persona
    from sscard.terminal import Terminal
    from sscard.transports.sim import SimReader

    started: list[tuple[Any, Any]] = []

    def start(config: Config, persona: str | None = None) -> tuple[Served, Any]:
        reader = SimReader(SimulatedCard(load_persona(persona or "typical")), "sim:desk")
        if persona is None:
            reader.remove()
        terminal = Terminal(reader, config=config)
        events, closed, publish = pin_events()
        source = PagePinSource(publish)
        server = NativeSocketServer(terminal, str(tmp_path / f"desk{len(started)}.sock"), pin_source=source).start()
        started.append((server, terminal))
        return Served(server, source, events, closed), reader

    yield start
    for server, terminal in started:
        server.close()
        terminal.close()


def desk_config(idcard_reader: SimulatedIdCardReader, qr: Any, **changes: Any) -> Config:
    values: dict[str, Any] = {
        "idcard_port": str(idcard_reader.path),
        "qr_port": str(qr.path),
        "terminal_id": "410100813475",
        "require_pin": False,
    }
    return Config(**{**values, **changes})


def person(out: bytes, encoding: str = "gb18030") -> dict[str, Any]:
    data = json.loads(out.decode(encoding))
    assert isinstance(data, dict) and all(isinstance(v, str) for v in data.values())
    return data


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_get_person_info_for_an_ssc_is_03_with_the_card_sn(
    heasec: dict[str, Path],
    front_desk: Callable[..., tuple[Served, Any]],
    idcard_reader: SimulatedIdCardReader,
    qr_scanner: Any,
    encoding: str,
) -> None:
    served, _ = front_desk(desk_config(idcard_reader, qr_scanner), persona="rare_char")
    env = {**served.env, "SSCARD_NATIVE_ENCODING": encoding}
    [_, (rc, out, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(), "GetPersonInfo", "", env=env)
    assert rc == 0, out
    line = cli_line("sim:rare_char").split("|")
    expected = {
        "mdtrt_cert_type": "03",
        "mdtrt_cert_no": line[1],
        "card_sn": line[3],
        "psn_cert_type": "01",
        "certno": line[1],
        "psn_name": line[4],
    }
    codec = "gb18030" if encoding == "gbk" else "utf-8"
    assert person(out, codec) == expected
    assert out == json.dumps(expected, ensure_ascii=False).encode(codec)  # byte for byte
    assert served.events.empty()  # CARD_PASSTYPE "2": no PIN asked


def test_get_person_info_for_an_id_card_is_02(
    heasec: dict[str, Path],
    front_desk: Callable[..., tuple[Served, Any]],
    idcard_reader: SimulatedIdCardReader,
    qr_scanner: Any,
) -> None:
    served, _ = front_desk(desk_config(idcard_reader, qr_scanner))
    idcard_reader.place(load_idcard("zhangsan"))
    [_, (rc, out, _)] = run_heasec(
        heasec["heasec"], LIB, "Init", init(), "GetPersonInfo", '{"any": "keys"}', env=served.env
    )
    assert rc == 0, out
    assert person(out) == {
        "mdtrt_cert_type": "02",
        "mdtrt_cert_no": "110101198503071235",
        "card_sn": "",
        "psn_cert_type": "01",
        "certno": "110101198503071235",
        "psn_name": "张三",
    }


def _scan_soon(qr: Any, code: str) -> Any:
    import threading

    def go() -> None:
        assert qr.wait_for_reader(10)
        qr.scan(code)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_get_person_info_for_an_evoucher_is_01_resolved_through_the_platform(
    heasec: dict[str, Path],
    front_desk: Callable[..., tuple[Served, Any]],
    idcard_reader: SimulatedIdCardReader,
    qr_scanner: Any,
    platform: Platform,
) -> None:
    served, _ = front_desk(desk_config(idcard_reader, qr_scanner, medical_ec_url=platform.url))
    thread = _scan_soon(qr_scanner, EVOUCHER)
    settings = init(EC_URL=platform.url, ORG_ID="H44030400007")
    [_, (rc, out, _)] = run_heasec(heasec["heasec"], LIB, "Init", settings, "GetPersonInfo", "", env=served.env)
    thread.join(10)
    assert rc == 0, out.decode("gb18030")
    assert person(out) == {
        "mdtrt_cert_type": "01",
        "mdtrt_cert_no": "ec-token-3f9d",
        "card_sn": "",
        "psn_cert_type": "01",
        "certno": "110101199001011237",
        "psn_name": "王五",
    }
    [sent] = platform.requests  # once, with Init's ORG_ID
    assert sent["transType"] == "ec.query" and sent["orgId"] == "H44030400007"
    assert EVOUCHER in json.dumps(sent)


def test_get_person_info_without_ec_url_answers_the_raw_code(
    heasec: dict[str, Path],
    front_desk: Callable[..., tuple[Served, Any]],
    idcard_reader: SimulatedIdCardReader,
    qr_scanner: Any,
    platform: Platform,
) -> None:
    served, _ = front_desk(desk_config(idcard_reader, qr_scanner, medical_ec_url=platform.url))
    thread = _scan_soon(qr_scanner, EVOUCHER)
    [_, (rc, out, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(EC_URL=""), "GetPersonInfo", "", env=served.env)
    thread.join(10)
    assert rc == 0 and person(out)["mdtrt_cert_type"] == "01" and person(out)["mdtrt_cert_no"] == EVOUCHER
    assert person(out)["certno"] == "" and platform.requests == []


def test_get_person_info_refuses_an_ec_url_the_service_does_not_allow(
    heasec: dict[str, Path],
    front_desk: Callable[..., tuple[Served, Any]],
    idcard_reader: SimulatedIdCardReader,
    qr_scanner: Any,
    platform: Platform,
) -> None:
    for allowed in (None, "https://ec.example/other"):
        served, _ = front_desk(desk_config(idcard_reader, qr_scanner, medical_ec_url=allowed))
        began = time.monotonic()
        results = run_heasec(
            heasec["heasec"], LIB, "Init", init(EC_URL=platform.url), "GetPersonInfo", "", env=served.env
        )
        [_, (rc, out, _)] = results
        assert rc == -14 and out == "参数错误：读卡服务未允许此电子凭证地址。".encode("gbk")
        assert platform.requests == [] and time.monotonic() - began < 2  # refused before any wait


def test_get_person_info_with_card_passtype_1_asks_the_pin(
    heasec: dict[str, Path],
    front_desk: Callable[..., tuple[Served, Any]],
    idcard_reader: SimulatedIdCardReader,
    qr_scanner: Any,
) -> None:
    served, _ = front_desk(desk_config(idcard_reader, qr_scanner), persona="typical")
    answered = [served.answer_next(pin="000000"), served.answer_next(pin="123456")]
    calls = ["Init", init(CARD_PASSTYPE="1"), "GetPersonInfo", "", "GetPersonInfo", ""]
    results = run_heasec(heasec["heasec"], LIB, *calls, env=served.env)
    for thread in answered:
        thread.join(10)
    assert results[1][0] == -51 and results[1][1] == "密码错误，还可尝试2次。".encode("gbk")
    assert results[2][0] == 0 and person(results[2][1])["mdtrt_cert_type"] == "03"


def test_get_person_info_with_nothing_presented_times_out(
    heasec: dict[str, Path],
    front_desk: Callable[..., tuple[Served, Any]],
    idcard_reader: SimulatedIdCardReader,
    qr_scanner: Any,
) -> None:
    served, _ = front_desk(desk_config(idcard_reader, qr_scanner))
    began = time.monotonic()
    [_, (rc, out, _)] = run_heasec(heasec["heasec"], LIB, "Init", init(TIMEOUT=1), "GetPersonInfo", "", env=served.env)
    assert rc == -12 and out and 0.9 < time.monotonic() - began < 5


def test_get_person_info_with_bad_indata_is_minus_14(heasec: dict[str, Path], tmp_path: Path) -> None:
    env = {"SSCARD_SOCKET": str(tmp_path / "none"), "SSCARD_NATIVE_ENCODING": "utf-8"}
    results = run_heasec(heasec["heasec"], LIB, "Init", init(), "GetPersonInfo", "[1]", "GetPersonInfo", "{x", env=env)
    assert [r[0] for r in results] == [0, -14, -14]
    assert results[1][1].decode() == "输入参数不是有效的JSON对象 / pInData is not a JSON object: not an object"
    assert results[2][1].decode() == "输入参数不是有效的JSON对象 / pInData is not a JSON object: not JSON"


# -- through pcscd + vpcd and `sscard serve --socket` ---------------------------------------------


@pytest.mark.pcscd
def test_heasec_through_sscard_serve_on_pcscd_vpcd(
    heasec: dict[str, Path],
    sscard_serve: Callable[..., Any],
    vpcd_card: Any,
    vpcd_reader: str,
    idcard_reader: SimulatedIdCardReader,
    tmp_path: Path,
) -> None:
    """The issue's "done when" for item 3: a C program that knows only HeaSecReadInfo.h gets the
    11-field line from a simulated SSC through the real pcscd, the ID-card fields from the
    simulated reader on a pty, GetPersonInfo's 03; PINs through /v1/pin-entry; then the service
    stops and every function is −11 within a second.  The same under ASan/UBSan."""
    from test_native_serve import Page

    served = sscard_serve(vpcd_reader, extra_env={"SSCARD_IDCARD_PORT": str(idcard_reader.path)})
    prog, lib = heasec["heasec"], LIB
    began = time.monotonic()
    [_, (rc, _, _)] = run_heasec(prog, lib, "Init", init(), "ReadCardBas", env=served.env)
    assert rc == -2 and time.monotonic() - began < 1.0  # no card: at once
    link = vpcd_card("rare_char")
    expected = cli_line(vpcd_reader)
    for encoding, codec in (("gbk", "gb18030"), ("utf-8", "utf-8")):
        env = {**served.env, "SSCARD_NATIVE_ENCODING": encoding}
        [_, (rc, info, busi)] = run_heasec(prog, lib, "Init", init(), "ReadCardBas", env=env)
        assert rc == 0 and info == expected.encode(codec) and busi == b""
    idcard_reader.place(load_idcard("zhangsan"))
    photo = tmp_path / "sfz.wlt"
    [_, (rc, out, _)] = run_heasec(prog, lib, "Init", init(), "ReadSFZ", str(photo), env=served.env)
    assert rc == 0 and out == ZHANGSAN.encode("gb18030")
    assert photo.read_bytes() == load_idcard("zhangsan").photo and stat.S_IMODE(photo.stat().st_mode) == 0o600
    idcard_reader.take_card()
    for pin, wanted in (("000000", -51), ("123456", 0)):
        page = Page(served.port, {"pin": pin})
        [_, _, (rc, out, _)] = run_heasec(prog, lib, "Init", init(), "ReadCardBas", "VerifyPIN", env=served.env)
        page.join()
        assert rc == wanted, out
        assert page.event is not None and page.event["operation"] == "verify"
    [_, (rc, out, _)] = run_heasec(prog, lib, "Init", init(), "GetPersonInfo", "", env=served.env)
    line = expected.split("|")
    assert rc == 0 and person(out) == {
        "mdtrt_cert_type": "03",
        "mdtrt_cert_no": line[1],
        "card_sn": line[3],
        "psn_cert_type": "01",
        "certno": line[1],
        "psn_name": line[4],
    }
    # the SSC taken out, the ID card on the reader: 02
    link.remove()
    from support import pcsc_env

    pcsc_env.wait_for_reader(vpcd_reader, present=False)
    idcard_reader.place(load_idcard("zhangsan"))
    [_, (rc, out, _)] = run_heasec(prog, lib, "Init", init(), "GetPersonInfo", "", env=served.env)
    assert rc == 0 and person(out)["mdtrt_cert_type"] == "02" and person(out)["psn_name"] == "张三"
    idcard_reader.take_card()
    vpcd_card("rare_char")
    # the same calls under ASan/UBSan
    env = {**served.env, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    idcard_reader.place(load_idcard("lisi_long_term"))
    page = Page(served.port, {"pin": "123456"})
    calls = ["ReadCardBas", "Init", init(), "ReadCardBas", "ReadSFZ", str(tmp_path / "asan.wlt"), "VerifyPIN"]
    results = run_heasec(heasec["heasec_asan"], ASAN_LIB, *calls, env=env)
    page.join()
    assert [r[0] for r in results] == [-14, 0, 0, 0, 0]
    assert results[2][1] == expected.encode("gb18030") and results[3][1] == LISI.encode("gb18030")
    idcard_reader.take_card()
    log = served.stop()
    assert "000000" not in log and "123456" not in log
    assert "110101198503071235" not in log and line[1] not in log  # no personal data at the default level
    for call, arg in (
        ("ReadCardBas", None),
        ("VerifyPIN", None),
        ("ChangePIN", None),
        ("ReadSFZ", ""),
        ("GetPersonInfo", ""),
    ):
        began = time.monotonic()
        extra = [arg] if arg is not None else []
        [_, (rc, out, _)] = run_heasec(prog, lib, "Init", init(), call, *extra, env=served.env)
        assert rc == -11 and time.monotonic() - began < 1.0 and out, call
