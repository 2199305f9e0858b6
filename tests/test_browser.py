"""The reference kiosk page in a real browser: headless Chromium → `sscard serve` → pcscd → vpcd → simulated card.

Every credential a resident may show (issue 16): the social security card with its PIN (wrong,
right, blocked, pulled out on the PIN screen), the electronic SSC and the medical e-voucher QR
codes on the simulated scanner, the resident ID card on the simulated ID-card reader (both on
real ptys), a national-interface program's ``iVerifyPIN`` answered on the page's PIN pad
(libSSCardDriver.so through ctypes, over the service's socket), the idle return, voice prompts,
and the service restarted under the page.  Each at 1080×1920 (portrait) and 1920×1080
(landscape), in normal and elder mode.

Every state leaves a screenshot in test-output/screenshots/ (CI keeps test-output), and at every
screenshot an in-page audit (:data:`AUDIT`) checks that no element overflows its box or the
screen, that every touch target is at least 64 px (elder mode 96 px), that every text meets WCAG
contrast AA (elder mode AAA) computed from the computed styles, that every English fragment is
marked ``lang="en"``, and that the content spans the screen.  The browser's own network log shows
that the page asks no host but the service.

One service and one browser for the module (the pcscd lock is held for the whole run); each test
loads the page afresh at its screen size and mode.  Needs Debian's chromium and chromium-driver
(run.sh installs both) and selenium (the test extra); like the pcscd fixtures, a missing browser
skips locally and fails under CI.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard
from sscard.sim.serial_qr import SimulatedQrScanner
from support import pcsc_env

pytestmark = pytest.mark.pcscd

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-output" / "screenshots"
LIB = ROOT / "native" / "build" / "libSSCardDriver.so"
WAIT = 20.0
RIGHT_PIN = "123456"  # the personas' PIN
WRONG_PIN = "654321"
EVOUCHER = "4243754826492874240001130000"  # docs/card-reference.md §9: 28 digits starting 424
ESSC = "ESSCsim0TestToken0NotReal0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4"  # qr_formats.toml
_SCANS = iter(range(1, 10_000))


def fresh(code: str) -> str:
    """Another code of the same kind: the scanner drops the same code again within its
    ``dedup_window`` (2 s), and these tests scan faster than that."""
    return code[:-4] + f"{next(_SCANS):04d}"


def lift(idcard: SimulatedIdCardReader) -> None:
    """Take the ID card off the reader and give the service's follower (which asks "find card"
    every 0.3 s) time to see it gone: a card laid down again sooner is, to it, one that never left."""
    idcard.take_card()
    time.sleep(0.8)


IDLE_SHORT = 6  # seconds: [kiosk] idle_timeout of the restarted service (the idle test)

#: (id, width, height, elder): both kiosk screens, in both modes.
SCREENS = [
    pytest.param(1080, 1920, False, id="1080x1920"),
    pytest.param(1080, 1920, True, id="1080x1920-elder"),
    pytest.param(1920, 1080, False, id="1920x1080"),
    pytest.param(1920, 1080, True, id="1920x1080-elder"),
]

#: The in-page audit (tests/support/kiosk_audit.js): a list of problems, empty when the screen is fine.
AUDIT = (Path(__file__).parent / "support" / "kiosk_audit.js").read_text(encoding="utf-8")


def _unavailable(reason: str) -> NoReturn:
    """Skip locally; fail under CI (the same rule as the pcscd fixtures in conftest.py)."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"the browser test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"the browser test needs chromium, chromium-driver and selenium: {reason}")


def _executable(preferred: str, name: str) -> str | None:
    if os.access(preferred, os.X_OK):
        return preferred
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class Service:
    """`sscard serve` in a subprocess (with its national-interface socket), output in files.
    :meth:`restart` stops it and starts it again on the same port, with a new ``[kiosk]``."""

    def __init__(self, reader: str, qr_port: str, idcard_port: str, workdir: Path) -> None:
        self.reader, self.qr_port, self.idcard_port, self.workdir = reader, qr_port, idcard_port, workdir
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.socket = str(workdir / "sscard.sock")
        self.runs = 0
        self.idle = 600.0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, idle: float = 600.0) -> None:
        self.idle = idle
        self.runs += 1
        config = self.workdir / "sscard.toml"
        config.write_text(
            f'[qr]\nport = "{self.qr_port}"\n[idcard]\nport = "{self.idcard_port}"\n'
            f"[kiosk]\nidle_timeout = {idle}\n[session]\nidle_timeout = 600\n",
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_") or k == "SSCARD_VPCD_SLOT"}
        env["SSCARD_CONFIG"] = str(config)
        command = [sys.executable, "-m", "sscard.cli", "serve", "--reader", self.reader, "--port", str(self.port)]
        command += ["--socket", self.socket]
        with self.path("stdout").open("ab") as out, self.path("stderr").open("ab") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=self.workdir)
        self.wait_ready()

    def path(self, stream: str) -> Path:
        return self.workdir / f"service.{stream}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"sscard serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                _get_json(f"{self.base}/v1/status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"sscard serve did not answer within {timeout:.0f} s:\n{self.output()}")
            time.sleep(0.1)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def output(self) -> str:
        parts = []
        for stream in ("stdout", "stderr"):
            with contextlib.suppress(OSError):
                parts.append(f"--- {stream}\n{self.path(stream).read_text(encoding='utf-8', errors='replace')}")
        return "\n".join(parts)

    def session(self) -> Any:
        return _get_json(f"{self.base}/v1/session")["session"]


class Page:
    """The kiosk page as the tests drive it: explicit waits, a screenshot and an audit per state."""

    def __init__(self, driver: Any, service: Service) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.service = driver, service
        self.wait = WebDriverWait(driver, WAIT, poll_frequency=0.1)
        self.prefix = "page"
        self.count = 0

    def open(self, test: str, width: int, height: int, elder: bool) -> Page:
        """Load the page afresh at this screen size, elder mode as the resident left it (storage)."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.driver.get(f"{self.service.base}/")
        self.driver.execute_script(
            "if (arguments[0]) localStorage.setItem('sscard.kiosk.elder', '1');"
            " else localStorage.removeItem('sscard.kiosk.elder');",
            elder,
        )
        self.driver.get(f"{self.service.base}/")
        self.prefix = f"{test}-{width}x{height}{'-elder' if elder else ''}"
        self.count = 0
        self.until(lambda: self.el("#conn").get_attribute("data-state") == "open", "the event stream connected")
        self.until(lambda: self.visible("#prompt"), "the welcome prompt")
        assert self.driver.execute_script("return document.documentElement.classList.contains('elder')") is elder
        icon = self.driver.execute_script("const l = document.querySelector('link[rel=icon]'); return l && l.href")
        assert icon and icon.startswith("data:image/svg+xml"), "no favicon (or one the browser must fetch)"
        return self

    def el(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return str(self.el(css).text)

    def visible(self, css: str) -> bool:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        try:
            return bool(self.el(css).is_displayed())
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    def until(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda _driver: condition())
        except TimeoutException:
            self.shot(f"failed-{what.replace(' ', '-')}", audit=False)
            error = self.driver.execute_script("return document.getElementById('error').textContent")
            pytest.fail(f"the page did not show {what} within {timeout:.0f} s; error box: {error!r}")

    def press(self, digits: str) -> None:
        for digit in digits:
            self.el(f'#pinpad button[data-key="{digit}"]').click()

    def shot(self, state: str, audit: bool = True) -> Path:
        """A screenshot of this state, and the audit of it (overflow, targets, contrast, lang, space)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.count += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{state}.png"
        self.driver.save_screenshot(str(path))
        if audit:
            problems = self.driver.execute_script(AUDIT)
            assert problems == [], f"{path.name}: {problems}"
        return path


# -- fixtures: one service, one browser, the serial devices, for the whole module -------------------


@pytest.fixture(scope="module")
def devices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimulatedQrScanner, SimulatedIdCardReader]]:
    where = tmp_path_factory.mktemp("devices")
    with SimulatedQrScanner(link=where / "sscard-qr") as qr, SimulatedIdCardReader(link=where / "sscard-idcard") as idc:
        yield qr, idc


@pytest.fixture(scope="module")
def service(
    pcscd: pcsc_env.Pcscd,
    devices: tuple[SimulatedQrScanner, SimulatedIdCardReader],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    qr, idcard = devices
    served = Service(pcsc_env.reader_name(), str(qr.path), str(idcard.path), tmp_path_factory.mktemp("service"))
    served.start()
    try:
        assert qr.wait_for_reader(WAIT), "the service never opened the simulated QR scanner"
        yield served
    finally:
        served.stop()
    log = served.output()
    assert "本地服务已启动" in log  # the output was captured at all
    for pin in (RIGHT_PIN, WRONG_PIN):
        assert pin not in log, "a PIN appeared in the service's output"


@pytest.fixture(scope="module")
def driver(pcscd: pcsc_env.Pcscd) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError as exc:
        _unavailable(f"selenium cannot be imported ({exc}; pip install 'selenium>=4.15')")
    chromium = _executable("/usr/bin/chromium", "chromium")
    if chromium is None:
        _unavailable("chromium is not installed (Debian: apt-get install chromium)")
    chromedriver = _executable("/usr/bin/chromedriver", "chromedriver")
    if chromedriver is None:
        _unavailable("chromedriver is not installed (Debian: apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1920,1920"):
        options.add_argument(argument)
    options.add_argument("--lang=zh-CN")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(options=options, service=DriverService(chromedriver))
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def page(driver: Any, service: Service, request: pytest.FixtureRequest) -> Iterator[Page]:
    """The page, and afterwards: nothing asked of any host but the service, no PIN in the console,
    nobody left signed in."""
    driver.get_log("performance")  # drop what earlier tests left
    yield Page(driver, service)
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            url = message["params"].get("request", {}).get("url") or message["params"].get("url", "")
            if not url.startswith("data:"):
                hosts.add(urlsplit(url).netloc)
    assert hosts <= {f"127.0.0.1:{service.port}"}, f"the page asked other hosts: {hosts}"
    console = json.dumps(driver.get_log("browser"))
    assert RIGHT_PIN not in console and WRONG_PIN not in console
    assert RIGHT_PIN not in driver.current_url
    if service.process is not None:
        with contextlib.suppress(urllib.error.URLError):
            if service.session() is not None:
                urllib.request.urlopen(
                    urllib.request.Request(f"{service.base}/v1/sign-out", data=b"{}", method="POST"), timeout=5
                )


def _welcome_again(page: Page, what: str) -> None:
    page.until(lambda: page.visible("#prompt") and not page.visible("#signin-state"), what)


# -- the social security card ------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "elder"), SCREENS)
def test_card_wrong_pin_right_pin_sign_out(
    page: Page, vpcd_card: pcsc_env.InsertCard, width: int, height: int, elder: bool
) -> None:
    page.open("card", width, height, elder)
    assert "请插社保卡、刷身份证或出示电子社保卡/医保码" in page.text("#prompt")
    assert page.el("#prompt .en").get_attribute("lang") == "en"
    page.shot("welcome")

    vpcd_card("typical")
    page.until(lambda: page.visible("#holder-name") and page.text("#holder-name") == "张三", "the cardholder")
    assert page.text("#holder-ssn") == "1101**********1235"
    assert "110101198503071235" not in page.driver.page_source
    page.until(lambda: page.visible("#pinpad"), "the PIN pad")
    page.shot("card-read")

    page.press(WRONG_PIN)
    assert page.text("#pin-dots") == "●" * len(WRONG_PIN)
    assert WRONG_PIN not in page.driver.page_source
    page.shot("pin-typed")
    page.el('#pinpad button[data-key="ok"]').click()
    page.until(lambda: page.visible("#tries") and page.text("#tries") == "2", "tries left 2")
    assert "密码错误，还可尝试2次" in page.text("#error") and "Wrong PIN, 2 tries left" in page.text("#error")
    assert page.text("#pin-dots") == ""
    page.shot("wrong-pin")

    page.press(RIGHT_PIN)
    page.el('#pinpad button[data-key="ok"]').click()
    page.until(lambda: page.visible("#signin-state"), "the signed-in state")
    assert page.text("#session-name") == "张三" and "Card + PIN" in page.text("#session-method")
    assert page.service.session()["method"] == "card+pin"
    assert RIGHT_PIN not in page.driver.page_source
    page.shot("signed-in")

    page.el("#signout").click()
    _welcome_again(page, "the prompt after sign-out")
    page.until(lambda: page.visible("#notice") and "请取回" in page.text("#notice"), "take your card")
    assert page.service.session() is None
    page.shot("signed-out")


@pytest.mark.parametrize(("width", "height", "elder"), SCREENS)
def test_blocked_card(page: Page, vpcd_card: pcsc_env.InsertCard, width: int, height: int, elder: bool) -> None:
    page.open("blocked", width, height, elder)
    vpcd_card("pin_blocked")
    page.until(lambda: page.visible("#card-blocked"), "the blocked-card message")
    assert not page.visible("#pinpad")  # no PIN asked for a blocked card
    assert "人工窗口" in page.text("#card-blocked")
    page.shot("blocked")


@pytest.mark.parametrize(("width", "height", "elder"), SCREENS)
def test_card_pulled_on_the_pin_screen(
    page: Page, vpcd_card: pcsc_env.InsertCard, width: int, height: int, elder: bool
) -> None:
    page.open("pulled", width, height, elder)
    link = vpcd_card("typical")
    page.until(lambda: page.visible("#pinpad"), "the PIN pad")
    page.press("123")
    link.remove()
    _welcome_again(page, "the prompt after the card came out")
    page.until(lambda: page.visible("#notice") and "社保卡已取出" in page.text("#notice"), "card removed")
    assert not page.visible("#pinpad") and page.text("#pin-dots") == ""
    page.shot("card-pulled")


# -- QR codes and the ID card --------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "elder"), SCREENS)
@pytest.mark.parametrize("credential", ["qr", "evoucher", "idcard"])
def test_sign_in_with_a_qr_code_or_the_id_card(
    page: Page,
    devices: tuple[SimulatedQrScanner, SimulatedIdCardReader],
    credential: str,
    width: int,
    height: int,
    elder: bool,
) -> None:
    qr, idcard = devices
    page.open(credential, width, height, elder)
    code = fresh(ESSC if credential == "qr" else EVOUCHER)
    if credential in ("qr", "evoucher"):
        qr.scan(code)
    else:
        idcard.place(load_idcard("zhangsan"))
    page.until(lambda: page.visible("#signin-state"), "the signed-in state")
    session = page.service.session()
    method = page.text("#session-method")
    if credential == "idcard":
        assert session["method"] == "idcard" and page.text("#session-name") == "张三" and "ID card" in method
        assert "110101198503071235" not in page.driver.page_source
    else:
        kind = "electronic_ssc" if credential == "qr" else "medical_insurance_evoucher"
        assert session["method"] == "qr" and session["credential"]["kind"] == kind
        assert ("Electronic SSC" if credential == "qr" else "Medical e-voucher") in method
        assert session["credential"]["code"] == code and code not in page.driver.page_source
    page.shot("signed-in")
    page.el("#signout").click()
    _welcome_again(page, "the prompt after sign-out")
    assert page.service.session() is None
    page.shot("signed-out")
    if credential == "idcard":
        lift(idcard)


# -- 医保: the medical insurance platform's fields from whichever credential ----------------------------------


@pytest.mark.parametrize(("width", "height", "elder"), SCREENS)
@pytest.mark.parametrize("credential", ["card", "idcard", "evoucher"])
def test_the_medical_insurance_entry(
    page: Page,
    vpcd_card: pcsc_env.InsertCard,
    devices: tuple[SimulatedQrScanner, SimulatedIdCardReader],
    credential: str,
    width: int,
    height: int,
    elder: bool,
) -> None:
    """The 医保 entry (POST /v1/medical/credential): the resident taps it, then shows any credential."""
    qr, idcard = devices
    page.open(f"medical-{credential}", width, height, elder)
    page.el("#medical-start").click()
    page.until(lambda: page.visible("#medical-title") and "医保服务" in page.text("#medical-title"), "the 医保 prompt")
    page.shot("waiting")
    # The wait takes the serial ports over from the service's followers (sscard.credentials): give
    # it a moment to open them, as a resident takes a moment to find the card.
    time.sleep(1.0)
    if credential == "card":
        vpcd_card("typical")
    elif credential == "idcard":
        idcard.place(load_idcard("zhangsan"))
    else:
        qr.scan(fresh(EVOUCHER))
    page.until(lambda: page.visible("#medical-fields"), "the platform's fields")
    kind = page.text("#medical-type")
    if credential == "card":
        assert "社保卡" in kind and page.text("#medical-name") == "张*"
        assert page.text("#medical-certno") == "1101**********1235"
    elif credential == "idcard":
        assert "身份证" in kind and page.text("#medical-name") == "张*"
    else:
        assert "医保码" in kind and page.visible("#medical-note")  # not resolved: no [medical] ec_url
    assert "110101198503071235" not in page.driver.page_source
    assert page.service.session() is None  # 医保 reads the credential; it signs nobody in
    page.shot("recognised")
    page.el("#medical-done").click()
    page.until(lambda: page.visible("#prompt"), "the start again")
    if credential == "idcard":
        lift(idcard)


# -- a national-interface program asks for the PIN --------------------------------------------------------------


def _national(function: str, env: dict[str, str]) -> tuple[int, bytes]:
    """Call libSSCardDriver.so by name through ctypes, as C#/JNA callers bind it."""
    for key, value in env.items():
        os.environ[key] = value
    lib = ctypes.CDLL(str(LIB))
    call = getattr(lib, function)
    call.argtypes = [ctypes.c_int, ctypes.c_char_p]
    call.restype = ctypes.c_long
    out = ctypes.create_string_buffer(1024)
    rc = int(call(3, out))
    return rc, out.value


@pytest.fixture(scope="module")
def library() -> Path:
    subprocess.run(["make", "-C", str(ROOT / "native"), "-s", "all"], check=True)
    return LIB


@pytest.mark.parametrize(
    ("width", "height", "elder", "answer"),
    [pytest.param(*screen.values, "pin", id=f"{screen.id}-answered") for screen in SCREENS]
    + [
        pytest.param(1080, 1920, True, "cancel", id="1080x1920-elder-cancelled"),
        pytest.param(1920, 1080, False, "timeout", id="1920x1080-timed-out"),
    ],
)
def test_a_native_verify_pin_answered_on_the_page(
    page: Page,
    library: Path,
    vpcd_card: pcsc_env.InsertCard,
    width: int,
    height: int,
    elder: bool,
    answer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page.open(f"native-{answer}", width, height, elder)
    vpcd_card("typical")
    page.until(lambda: page.visible("#pinpad"), "the card's PIN pad")
    env = {"SSCARD_SOCKET": page.service.socket, "SSCARD_PIN_TIMEOUT": "4" if answer == "timeout" else "60"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _national("iReadCardBas", env)[0] == 0  # the program reads the card first, as kiosk programs do
    result: list[tuple[int, bytes]] = []
    caller = threading.Thread(target=lambda: result.append(_national("iVerifyPIN", env)), daemon=True)
    caller.start()
    try:
        page.until(lambda: page.visible("#pinreq-title"), "the program's PIN request")
        assert "柜台程序请求验证社保卡密码" in page.text("#pinreq-title")
        assert f"PID {os.getpid()}" in page.text("#pinreq-caller")
        assert "验证密码" in page.text("#pinreq-operation")
        first = int(page.text("#pinreq-count"))
        assert 1 <= first <= int(env["SSCARD_PIN_TIMEOUT"])
        page.shot("pin-requested")
        if answer == "pin":
            page.press(RIGHT_PIN)
            page.el('#pinpad button[data-key="ok"]').click()
            expected = 0
        elif answer == "cancel":
            page.el("#pinreq-cancel").click()
            expected = -31
        else:
            page.until(lambda: int(page.text("#pinreq-count") or 99) < first, "the countdown")
            expected = -32
        caller.join(30)
    finally:
        if caller.is_alive():  # a failed step: end the request, or it holds the reader for the next test
            with contextlib.suppress(Exception):
                page.el("#pinreq-cancel").click()
            caller.join(70)
    assert result and result[0][0] == expected, result
    page.until(lambda: not page.visible("#pinreq-title"), "the PIN request closed", timeout=10)
    notice = {"pin": "密码已提交", "cancel": "已取消", "timeout": "输入超时"}[answer]
    page.until(lambda: notice in page.text("#error") or notice in page.text("#notice"), f"«{notice}»")
    page.shot(f"pin-request-{answer}")


# -- voice prompts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "elder"), [SCREENS[1]])
def test_voice_prompts_are_off_until_turned_on_and_speak_zh_cn(
    page: Page, devices: tuple[SimulatedQrScanner, SimulatedIdCardReader], width: int, height: int, elder: bool
) -> None:
    page.open("voice", width, height, elder)
    spy = (
        "window.__spoken = []; const real = window.speechSynthesis.speak.bind(window.speechSynthesis);"
        " window.speechSynthesis.speak = (u) => { window.__spoken.push([u.lang, u.text]); real(u); };"
    )
    page.driver.execute_script(spy)
    toggle = page.el("#voice-toggle")
    assert toggle.is_displayed() and toggle.get_attribute("aria-pressed") == "false"
    devices[0].scan(fresh(EVOUCHER))
    page.until(lambda: page.visible("#signin-state"), "the signed-in state")
    assert page.driver.execute_script("return window.__spoken") == []  # off by default
    page.el("#signout").click()
    _welcome_again(page, "the prompt")
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    page.shot("voice-on")
    devices[0].scan(fresh(ESSC))
    page.until(lambda: page.visible("#signin-state"), "the signed-in state")
    spoken = page.driver.execute_script("return window.__spoken")
    assert spoken and all(lang == "zh-CN" for lang, _ in spoken)
    assert any("已登录" in text for _, text in spoken), spoken


def test_the_page_works_without_speech_synthesis(
    page: Page, devices: tuple[SimulatedQrScanner, SimulatedIdCardReader]
) -> None:
    script = page.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": "delete window.speechSynthesis; delete window.SpeechSynthesisUtterance;"},
    )
    try:
        page.open("no-voice", 1080, 1920, False)
        assert not page.visible("#voice-toggle")
        devices[0].scan(fresh(EVOUCHER))
        page.until(lambda: page.visible("#signin-state"), "the signed-in state")
        page.shot("signed-in-without-voice")
    finally:
        page.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


# -- the service restarted under the page, then the idle return (last: it shortens the idle time) -------------------


@pytest.mark.parametrize(("width", "height", "elder"), SCREENS)
def test_service_restart_then_the_idle_return(
    page: Page,
    devices: tuple[SimulatedQrScanner, SimulatedIdCardReader],
    service: Service,
    width: int,
    height: int,
    elder: bool,
) -> None:
    qr, idcard = devices
    page.open("restart-idle", width, height, elder)
    service.stop()
    try:
        page.until(lambda: page.visible("#reconnecting"), "服务重新连接中")
        assert "服务重新连接中" in page.text("#reconnecting")
        page.shot("reconnecting")
    finally:
        service.start(idle=IDLE_SHORT)
    assert qr.wait_for_reader(WAIT)
    page.until(lambda: not page.visible("#reconnecting"), "the page reconnected", timeout=30)
    time.sleep(0.3)  # pyserial empties its input right after opening the port

    idcard.place(load_idcard("zhangsan"))
    page.until(lambda: page.visible("#signin-state"), "the signed-in state")
    lift(idcard)
    assert service.session() is not None
    page.until(lambda: page.visible("#idle-warning"), "the idle warning", timeout=IDLE_SHORT + 5)
    page.shot("idle-warning")
    page.until(lambda: page.visible("#prompt") and not page.visible("#idle-warning"), "the start again", timeout=15)
    page.until(lambda: service.session() is None, "signed out by the idle return")
    assert not page.visible("#session-name")
    page.shot("idle-returned")
