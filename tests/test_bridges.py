"""Vendor-bridge profiles (issue 13, item 7): `sscard serve --bridge PROFILE[:PORT]` as a process,
answered with a real WebSocket client (``websockets``) and a real HTTP client (``urllib``).

Every shipped profile's messages for the simulated card (``sim:`` in the fast tests, the vpcd
reader through pcscd in the ``pcscd`` one, the ID card on a pty through the simulated ID-card
reader), the no-card code, the guard on the bridge's port (a refused Origin, a refused Host, the
token), and broken profile files (CONFIG_ERROR naming the file and the key, at start-up).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sscard.errors import ConfigError
from sscard.service.bridge_profiles import OPERATIONS, bundled, load_profile
from test_native import cli_line

FOREIGN = "https://evil.example"
#: The kiosk page's origin, put in [service] allowed_origins as docs/service.md tells a kiosk team.
PAGE = "http://kiosk.local"
SERVE = (sys.executable, "-m", "sscard.cli", "serve")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Serve:
    process: subprocess.Popen[str]
    port: int
    bridge: int

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.communicate(timeout=15)[1]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(reader: str, bridge: str, config: str = "", token: str | None = None, by_config: bool = False) -> Serve:
        """``by_config``: the bridge from ``[bridge] profile``/``port`` instead of ``--bridge``."""
        port, bridge_port = _free_port(), _free_port()
        conf = tmp_path / f"sscard{len(started)}.toml"
        own = f"http://127.0.0.1:{port}"  # the service's own page (answers pin_requested)
        if by_config:
            config += f'[bridge]\nprofile = "{bridge}"\nport = {bridge_port}\n'
        conf.write_text(f'[service]\nallowed_origins = ["{PAGE}", "{own}"]\n{config}', encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_") or k == "SSCARD_VPCD_SLOT"}
        env["SSCARD_CONFIG"] = str(conf)
        if token:
            env["SSCARD_SERVICE_TOKEN"] = token
        process = subprocess.Popen(
            [*SERVE, "--reader", reader, "--port", str(port)]
            + ([] if by_config else ["--bridge", f"{bridge}:{bridge_port}"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        served = Serve(process, port, bridge_port)
        started.append(served)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", bridge_port), timeout=1):
                    break
            except OSError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.1)
        return served

    yield start
    for served in started:
        served.stop()


def talk(port: int, messages: list[Any], origin: str | None = PAGE, host: str | None = None) -> list[Any]:
    """Send each message (JSON, or a str as is) on one WebSocket; the JSON answers."""
    import websockets

    async def run() -> list[Any]:
        headers = {"Host": host} if host else None
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/",
            origin=origin,  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=10,
        ) as ws:
            answers = []
            for message in messages:
                await ws.send(message if isinstance(message, str) else json.dumps(message))
                answers.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
            return answers

    return asyncio.run(run())


def refused_status(port: int, origin: str | None = PAGE, host: str | None = None) -> int:
    import websockets
    from websockets.exceptions import InvalidStatus

    try:
        talk(port, [{}], origin=origin, host=host)
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    except websockets.exceptions.ConnectionClosed as exc:  # pragma: no cover - the guard answers before the upgrade
        return exc.rcvd.code if exc.rcvd else 0
    return 0


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


READ = {"function": "iReadCardBas", "iType": 3}


# -- the shipped profiles, as sscard serve answers them ----------------------------------------------


def test_ssc_bridge_answers_as_the_vendor_bridge(serve: Callable[..., Serve]) -> None:
    served = serve("sim:typical", "ssc-ws")
    read, wrong, right, unknown, garbage = talk(
        served.bridge,
        [
            READ,
            {"function": "iVerifyPIN", "iType": 3, "pin": "918273"},
            {"function": "iVerifyPIN", "pin": "123456"},
            {"function": "iDoDebit"},
            "not json",
        ],
    )
    assert read == {"success": 0, "pOutInfo": cli_line("sim:typical")}
    assert wrong == {"success": -51, "pOutInfo": "密码错误，还可尝试2次。"}
    assert right == {"success": 0, "pOutInfo": ""}
    assert unknown["success"] == -13 and "iDoDebit" in unknown["pOutInfo"] and set(unknown) == {"success", "pOutInfo"}
    assert garbage["success"] == -13
    assert "918273" not in served.stop()  # never logged


def test_ssc_bridge_pin_call_without_a_pin_asks_the_pin_device(serve: Callable[..., Serve]) -> None:
    """{"function": "iVerifyPIN", "iType": 3}, as the DLL's call: the page's PIN pad answers
    ``pin_requested`` through ``POST /v1/pin-entry`` (the configured PIN source, default page)."""
    from test_native_serve import Page

    served = serve("sim:typical", "ssc-ws")
    for answer, wanted in (({"pin": "918273"}, -51), ({"cancel": True}, -31), ({"pin": "123456"}, 0)):
        page = Page(served.port, answer)
        [result] = talk(served.bridge, [{"function": "iVerifyPIN", "iType": 3}])
        page.join()
        assert result["success"] == wanted, result
        assert page.event is not None and page.event["operation"] == "verify" and page.status == 204
    assert "918273" not in served.stop()


def test_ssc_bridge_hsm_steps(serve: Callable[..., Serve]) -> None:
    from sscard.national import parse_ireadcardbas
    from sscard.psam.hsm import HsmStep1
    from test_auth import hsm

    served = serve("sim:v3", "ssc-ws", config='[keys]\nservice = "hsm"\n')
    [step1] = talk(served.bridge, [{"function": "iReadCardBas_HSM_Step1", "iType": 3}])
    assert step1["success"] == 0
    key = hsm(HsmStep1.parse(step1["pOutInfo"]))
    done, mismatch = talk(
        served.bridge,
        [
            {"function": "iReadCardBas_HSM_Step2", "pInInfo": step1["pOutInfo"], "pKey": key},
            {"function": "iReadCardBas_HSM_Step2", "pInInfo": step1["pOutInfo"], "pKey": "x"},
        ],
    )
    assert done["success"] == 0 and parse_ireadcardbas(done["pOutInfo"])["姓名"] == "次仁·旺堆"
    assert mismatch["success"] == -25 and mismatch["pOutInfo"]


def test_http_bridge_answers_the_query_string_call(serve: Callable[..., Serve]) -> None:
    served = serve("sim:typical", "http-entry")
    base = f"http://127.0.0.1:{served.bridge}/api/entry"
    status, headers, body = get(f"{base}?param={urllib.parse.quote(json.dumps(READ))}", {"Origin": PAGE})
    assert status == 200 and body == {"success": 0, "pOutInfo": cli_line("sim:typical")}
    assert headers.get("access-control-allow-origin") == PAGE  # the page's origin, never *
    status, _, body = get(f"{base}?param=%7B", {"Origin": PAGE})
    assert status == 200 and body["success"] == -13
    status, _, body = get(f"{base}?param={urllib.parse.quote(json.dumps(READ))}", {"Origin": FOREIGN})
    assert status == 403 and body["error"]["code"] == "ORIGIN_REFUSED"
    status, _, body = get(f"{base}?param=%7B%7D", {"Host": f"evil.example:{served.bridge}"})
    assert status == 403 and body["error"]["code"] == "ORIGIN_REFUSED"
    status, _, body = get(f"http://127.0.0.1:{served.bridge}/v1/status")  # only the bridge on its port
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"


def test_idcard_bridge_reads_the_id_card(serve: Callable[..., Serve], tmp_path: Path) -> None:
    from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard

    with SimulatedIdCardReader(load_idcard("zhangsan")) as reader:
        served = serve("sim:typical", "idcard-ws", config=f'[idcard]\nport = "{reader.path}"\n', by_config=True)
        [answer] = talk(served.bridge, [{"type": 4}])
        assert answer == {
            "type": 4,
            "code": 0,
            "message": "",
            "name": "张三",
            "sex": "男",
            "nation": "汉族",
            "birth": "19850307",
            "address": "北京市东城区景山前街4号",
            "idnum": "110101198503071235",
            "issuer": "北京市公安局东城分局",
            "validFrom": "20150618",
            "validTo": "20350618",
        }
        reader.take_card()
        [empty, other] = talk(served.bridge, [{"type": 4}, {"type": 1}])
        assert empty["code"] == -2 and empty["message"] and empty["name"] == ""  # the profile's [codes]
        assert other == {"type": 1, "code": -13, "message": other["message"]} and other["message"]
        log = served.stop()
    assert "110101198503071235" not in log and "张三" not in log


# -- the guard on the bridge's port ----------------------------------------------------------------------


def test_the_bridge_port_refuses_a_foreign_origin_and_a_foreign_host(serve: Callable[..., Serve]) -> None:
    served = serve("sim:typical", "ssc-ws")
    assert refused_status(served.bridge, origin=FOREIGN) == 403
    assert refused_status(served.bridge, host=f"evil.example:{served.bridge}") == 403
    assert talk(served.bridge, [READ], host=f"localhost:{served.bridge}")[0]["success"] == 0
    log = served.stop()
    assert "refused (origin)" in log and "refused (host)" in log


def test_the_bridge_port_needs_the_token_from_a_client_without_an_origin(serve: Callable[..., Serve]) -> None:
    """``/`` is open to token-less local clients on the service's port (the page itself); on the
    bridge's port ``/`` is the bridge, so it is not."""
    served = serve("sim:typical", "ssc-ws", token="s3cret-token")
    assert refused_status(served.bridge, origin=None) == 403  # the guard's 401 before the upgrade
    assert talk(served.bridge, [READ])[0]["success"] == 0  # an allowed page: its Origin vouches for it
    status, _, body = get(f"http://127.0.0.1:{served.bridge}/")
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"


# -- broken profiles: CONFIG_ERROR naming the file and the key, at start-up ---------------------------------

GOOD = """
transport = "websocket"
port = 12342
select = "function"
[fallback]
answer = { success = "{code}" }
[calls.iReadCardBas]
operation = "iReadCardBas"
answer = { success = "{code}", pOutInfo = "{output}" }
"""


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('operation = "iReadCardBas"', 'operation = "iFormatCard"'), "calls.iReadCardBas.operation"),
        (('pOutInfo = "{output}"', 'pOutInfo = "{outptu}"'), "calls.iReadCardBas.answer.pOutInfo"),
        (('pOutInfo = "{output}"', 'pOutInfo = "{tries_left}"'), "calls.iReadCardBas.answer.pOutInfo"),
        (('select = "function"', 'select = "function"\nlisten = "0.0.0.0"'), "listen"),
        (('transport = "websocket"', 'transport = "tcp"'), "transport"),
        (("port = 12342", "port = 70000"), "port"),
        (
            ('operation = "iReadCardBas"', 'operation = "iReadCardBas"\nargs = { pin = "p" }'),
            "calls.iReadCardBas.args.pin",
        ),
        (
            ('answer = { success = "{code}" }', 'answer = { success = "{code}", x = "{request.pPin}" }'),
            "fallback.answer.x",
        ),
    ],
)
def test_a_broken_profile_names_its_file_and_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    text = GOOD
    if key == "fallback.answer.x":  # a PIN field may not be echoed anywhere
        text += '[calls.iVerifyPIN]\noperation = "iVerifyPIN"\nargs = { pin = "pPin" }\nanswer = { c = "{code}" }\n'
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(*change), encoding="utf-8")
    load_profile(_write(tmp_path / "good.toml", text))  # the unbroken file loads
    with pytest.raises(ConfigError) as caught:
        load_profile(str(path))
    assert caught.value.code == "CONFIG_ERROR"
    assert caught.value.fields["key"] == key and caught.value.fields["file"] == str(path)


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_pin_call_on_an_http_bridge_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace('"websocket"', '"http"').replace('select = "function"', 'select = "function"\nquery = "q"')
    text += '[calls.iVerifyPIN]\noperation = "iVerifyPIN"\nargs = { pin = "pin" }\nanswer = { c = "{code}" }\n'
    with pytest.raises(ConfigError) as caught:
        load_profile(_write(tmp_path / "http.toml", text))
    assert caught.value.fields["key"] == "calls.iVerifyPIN.operation" and "URL" in str(caught.value)


def test_serve_with_a_broken_profile_stops_at_start_up_with_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "broken.toml", GOOD.replace('"{output}"', '"{pOutInfo}"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_")}
    proc = subprocess.run(
        [*SERVE, "--reader", "sim:typical", "--port", str(_free_port()), "--bridge", path],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
    )
    assert proc.returncode == 7 and proc.stderr.startswith("error CONFIG_ERROR:")  # before "service on …"
    assert path in proc.stderr and "calls.iReadCardBas.answer.pOutInfo" in proc.stderr


def test_an_unknown_profile_name_and_a_bad_port_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile("no-such-bridge")
    assert "ssc-ws" in str(caught.value)  # lists the shipped ones
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_")}
    port = _free_port()
    for option, code in ((f"ssc-ws:{port}", "CONFIG_ERROR"), ("ssc-ws:0", "USAGE_ERROR")):
        proc = subprocess.run(
            [*SERVE, "--reader", "sim:typical", "--port", str(port), "--bridge", option],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=30,
        )
        assert proc.returncode != 0 and f"error {code}:" in proc.stderr, proc.stderr


def test_the_shipped_profiles_load_and_are_listed() -> None:
    names = bundled()
    assert names == ["http-entry", "idcard-ws", "ssc-ws"]
    for name in names:
        profile = load_profile(name)
        assert profile.operations() <= set(OPERATIONS)
    assert load_profile("ssc-ws").port == 12342 and load_profile("idcard-ws").port == 1919
    assert load_profile("http-entry").port == 8321 and load_profile("http-entry").path == "/api/entry"
    listed = subprocess.run([*SERVE, "--list-bridges"], capture_output=True, text=True, check=True)
    assert [line.split()[:3] for line in listed.stdout.splitlines()] == [
        ["http-entry", "http", "8321"],
        ["idcard-ws", "websocket", "1919"],
        ["ssc-ws", "websocket", "12342"],
    ]


def test_the_bridge_keys_are_in_the_schema(tmp_path: Path) -> None:
    from sscard.config import load_config

    conf = _write(tmp_path / "c.toml", '[bridge]\nprofile = "ssc-ws"\nport = 22342\n')
    config = load_config(conf, env={})
    assert (config.bridge_profile, config.bridge_port) == ("ssc-ws", 22342)
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path / "d.toml", "[bridge]\nport = 0\n"), env={})
    assert caught.value.fields["key"] == "bridge.port"


# -- through pcscd + vpcd ----------------------------------------------------------------------------------------


@pytest.mark.pcscd
def test_the_bridges_through_pcscd_vpcd(serve: Callable[..., Serve], vpcd_card: Any, vpcd_reader: str) -> None:
    """The SSC bridge and the HTTP bridge on the real reader: no card −2 at once, then the line."""
    ssc = serve(vpcd_reader, "ssc-ws")
    http = serve(vpcd_reader, "http-entry")
    url = f"http://127.0.0.1:{http.bridge}/api/entry?param={urllib.parse.quote(json.dumps(READ))}"
    began = time.monotonic()
    [empty] = talk(ssc.bridge, [READ])
    assert empty["success"] == -2 and time.monotonic() - began < 2
    assert get(url, {"Origin": PAGE})[2]["success"] == -2
    vpcd_card("rare_char")
    expected = cli_line(vpcd_reader)
    read, wrong = talk(ssc.bridge, [READ, {"function": "iVerifyPIN", "pin": "000000"}])
    assert read == {"success": 0, "pOutInfo": expected} and "䶮" in expected
    assert wrong["success"] == -51
    assert get(url, {"Origin": PAGE})[2] == {"success": 0, "pOutInfo": expected}
    assert refused_status(ssc.bridge, origin=FOREIGN) == 403


def test_the_documented_profile_example_loads(tmp_path: Path) -> None:
    """docs/service.md "Writing a profile": the example is a valid profile, its answers render."""
    from sscard.service.bridge_profiles import render

    docs = (Path(__file__).parents[1] / "docs" / "service.md").read_text(encoding="utf-8")
    example = docs.split("**Writing a profile.**", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    profile = load_profile(_write(tmp_path / "our-vendor.toml", example))
    call = profile.calls["ReadCardPassword"]
    assert (call.operation, dict(call.args)) == ("iVerifyPIN", {"pin": "password"})
    values = {"code": -51, "output": "密码错误，还可尝试2次。", "tries_left": 2}
    answer = render(call.answer, values, {"seq": 7, "password": "123456"})
    assert answer == {"result": -51, "msg": "密码错误，还可尝试2次。", "left": 2, "echo": 7}
