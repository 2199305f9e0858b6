"""The reference kiosk page in a real browser: headless Chromium → `sscard serve` → pcscd → vpcd → simulated card.

One walk through the page (src/sscard/service/static/index.html) as a resident would take it: the
welcome prompt, a QR scan, the card going in, a wrong PIN, the right PIN, the card coming out, and
the large-font elder mode.  Every step leaves a screenshot in test-output/screenshots/ (CI keeps
test-output).  Nothing is mocked: the service is the `sscard serve` command in its own process, the
card is the simulator behind pcscd's vpcd reader, the QR scanner a simulated one on a pty.

Needs Debian's chromium and chromium-driver (run.sh installs both) and selenium (the test extra).
Like the pcscd fixtures, a missing browser skips the test locally and fails it under CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from sscard.sim.serial_qr import SimulatedQrScanner

pytestmark = pytest.mark.pcscd

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
WAIT = 20.0
RIGHT_PIN = "123456"  # the typical persona's PIN
WRONG_PIN = "654321"
EVOUCHER = "4243754826492874240001130000"  # docs/card-reference.md §9: 28 digits starting 424


def _unavailable(reason: str) -> NoReturn:
    """Skip locally; fail under CI (the same rule as the pcscd fixtures in conftest.py)."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"the browser test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"the browser test needs chromium, chromium-driver and selenium: {reason}")


def _executable(preferred: str, name: str) -> str | None:
    if os.access(preferred, os.X_OK):
        return preferred
    return shutil.which(name)


@pytest.fixture
def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver), or a skip (locally) / failure (CI) naming what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError as exc:
        _unavailable(f"selenium cannot be imported ({exc}; pip install 'selenium>=4.15')")
    chromium = _executable("/usr/bin/chromium", "chromium")
    if chromium is None:
        _unavailable("chromium is not installed (Debian: apt-get install chromium)")
    driver = _executable("/usr/bin/chromedriver", "chromedriver")
    if driver is None:
        _unavailable("chromedriver is not installed (Debian: apt-get install chromium-driver)")
    return chromium, driver


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class Service:
    """`sscard serve` in a subprocess, its output in files (no pipe to fill up)."""

    def __init__(self, reader: str, qr_port: str, workdir: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stdout_path = workdir / "service.stdout"
        self.stderr_path = workdir / "service.stderr"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSCARD_") or k == "SSCARD_VPCD_SLOT"}
        env.update({"SSCARD_CONFIG": "", "SSCARD_QR_PORT": qr_port})
        command = [sys.executable, "-m", "sscard.cli", "serve", "--reader", reader, "--port", str(self.port)]
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            # cwd: a directory without an sscard.toml, so no configuration file is picked up.
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=workdir)

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"sscard serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                status: dict[str, Any] = _get_json(f"{self.base}/v1/status")
                return status
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"sscard serve did not answer /v1/status within {timeout:.0f} s:\n{self.output()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def output(self) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name}\n{path.read_text(encoding='utf-8', errors='replace')}")
        return "\n".join(parts)


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[SimulatedQrScanner]:
    with SimulatedQrScanner(link=tmp_path / "sscard-qr") as sim:
        yield sim


def _chrome(chromium: str, chromedriver: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.add_argument("--lang=zh-CN")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=DriverService(chromedriver))


class Page:
    """The kiosk page as the test drives it: explicit waits, one screenshot per step."""

    def __init__(self, driver: Any) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.wait = WebDriverWait(driver, WAIT, poll_frequency=0.1)
        self.shots: list[Path] = []

    def el(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return str(self.el(css).text)

    def until(self, condition: Any, what: str) -> Any:
        from selenium.common.exceptions import TimeoutException

        try:
            return self.wait.until(lambda _driver: condition())
        except TimeoutException:
            self.screenshot(f"failed-{what}")
            pytest.fail(f"the page did not show {what} within {WAIT:.0f} s; error box: {self._error_text()!r}")

    def _error_text(self) -> str:
        with contextlib.suppress(Exception):
            return str(self.driver.execute_script("return document.getElementById('error').textContent"))
        return ""

    def visible(self, css: str) -> bool:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        try:
            return bool(self.el(css).is_displayed())
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    def enter_pin(self, pin: str) -> None:
        """Press the digits on the on-screen pad (the PIN itself goes nowhere else)."""
        for digit in pin:
            self.el(f'#pinpad button[data-key="{digit}"]').click()

    def font_px(self, css: str) -> float:
        size = self.driver.execute_script("return getComputedStyle(document.querySelector(arguments[0])).fontSize", css)
        return float(str(size).removesuffix("px"))

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{len(self.shots) + 1:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        self.shots.append(path)
        return path


def test_kiosk_page_walkthrough(
    browser_paths: tuple[str, str], vpcd_card: Any, vpcd_reader: str, scanner: SimulatedQrScanner, tmp_path: Path
) -> None:
    chromium, chromedriver = browser_paths
    service = Service(vpcd_reader, scanner.path, tmp_path)
    driver = None
    try:
        status = service.wait_ready()
        assert status["reader"] == vpcd_reader
        assert scanner.wait_for_reader(WAIT), "the service never opened the simulated QR scanner"
        driver = _chrome(chromium, chromedriver)
        page = Page(driver)

        # 1. The welcome prompt, once the event stream is up (a card inserted before would be read
        #    on connect anyway, but the QR scan below is only seen by a connected page).
        driver.get(f"{service.base}/")
        page.until(lambda: page.el("#conn").get_attribute("data-state") == "open", "the event stream connected")
        page.until(lambda: page.visible("#prompt"), "the welcome prompt")
        assert "请插入社保卡或出示电子社保卡/医保电子凭证二维码" in page.text("#prompt")
        assert "Insert your social security card or show your QR code" in page.text("#prompt")
        page.screenshot("welcome")

        # 2. A QR scan: the credential's kind, nothing more (there is no QR sign-in endpoint).
        scanner.scan(EVOUCHER)
        page.until(lambda: page.visible("#qr-result"), "the QR scan")
        assert "已扫码: 医保电子凭证" in page.text("#qr-result")
        assert page.el("#qr-result").get_attribute("data-kind") == "medical_insurance_evoucher"
        assert EVOUCHER not in driver.page_source  # a bearer credential: not shown
        page.screenshot("qr-scanned")

        # 3. The card goes in: the page reads it on card_inserted and shows the cardholder.
        link = vpcd_card("typical")
        page.until(lambda: page.visible("#holder-name") and page.text("#holder-name") == "张三", "the cardholder")
        assert page.text("#holder-ssn") == "1101**********1235"
        assert page.text("#holder-gender") == "男"
        assert page.text("#holder-nation") == "汉族"
        assert page.text("#holder-card") == "102307185"
        assert "110101198503071235" not in driver.page_source
        # The simulator's photo is not a decodable JPEG: the page must hide it, not show a broken image.
        page.until(
            lambda: driver.execute_script(
                "const p = document.getElementById('photo'); return p.complete || !p.getAttribute('src');"
            ),
            "the photo loaded or given up",
        )
        assert driver.execute_script(
            "const p = document.getElementById('photo'); return p.hidden || p.naturalWidth > 0;"
        ), "a broken photo is on screen"
        page.screenshot("card-read")

        # 4. A wrong PIN: dots while typing, then the error in both languages with the tries left.
        page.enter_pin(WRONG_PIN)
        assert page.text("#pin-dots") == "●" * len(WRONG_PIN)
        assert WRONG_PIN not in driver.page_source
        page.screenshot("pin-typed")
        page.el('#pinpad button[data-key="ok"]').click()
        page.until(lambda: page.visible("#tries") and page.text("#tries") == "2", "tries left 2")
        error = page.text("#error")
        assert "密码错误，还可尝试2次" in error
        assert "Wrong PIN, 2 tries left" in error
        assert page.text("#pin-dots") == ""
        assert WRONG_PIN not in driver.page_source
        page.screenshot("wrong-pin")

        # 5. The right PIN: signed in, with name, method and expiry, and a sign-out button.
        page.enter_pin(RIGHT_PIN)
        page.el('#pinpad button[data-key="ok"]').click()
        page.until(lambda: page.visible("#signin-state"), "the signed-in state")
        assert page.text("#session-name") == "张三"
        assert "Card + PIN" in page.text("#session-method")
        assert page.text("#session-expires")
        assert page.visible("#signout")
        assert not page.visible("#error")
        assert RIGHT_PIN not in driver.page_source
        session = _get_json(f"{service.base}/v1/session")["session"]
        assert session is not None
        assert session["method"] == "card+pin"
        page.screenshot("signed-in")

        # 6. The card comes out: the session ends and the page is back at the welcome prompt.
        link.remove()
        page.until(lambda: page.visible("#prompt") and not page.visible("#signin-state"), "the prompt again")
        page.until(lambda: page.visible("#notice"), "the signed-out notice")
        assert "Card removed" in page.text("#notice")
        assert not page.visible("#holder-name")
        assert _get_json(f"{service.base}/v1/session")["session"] is None
        page.screenshot("card-removed")

        # 7. Elder mode (长辈版): bigger type, for the page's lifetime only.
        normal = page.font_px("#prompt")
        page.el("#elder-toggle").click()
        page.until(lambda: page.font_px("#prompt") > normal * 1.2, "the larger elder-mode font")
        assert page.el("#elder-toggle").get_attribute("aria-pressed") == "true"
        assert driver.execute_script("return window.localStorage.length + window.sessionStorage.length") == 0
        page.screenshot("elder-mode")
        page.el("#elder-toggle").click()
        page.until(lambda: page.font_px("#prompt") == normal, "the normal font again")

        # The PIN went nowhere but the sign-in bodies: not the URL, the console, or a file name.
        assert WRONG_PIN not in driver.current_url and RIGHT_PIN not in driver.current_url
        console = json.dumps(driver.get_log("browser"))
        assert WRONG_PIN not in console and RIGHT_PIN not in console
        assert [shot.name for shot in page.shots if RIGHT_PIN in shot.name or WRONG_PIN in shot.name] == []
        assert all(shot.is_file() and shot.stat().st_size > 0 for shot in page.shots)
    finally:
        if driver is not None:
            driver.quit()
        service.stop()

    stderr = service.stderr_path.read_text(encoding="utf-8", errors="replace")
    stdout = service.stdout_path.read_text(encoding="utf-8", errors="replace")
    assert "本地服务已启动" in stderr  # the output was captured at all
    for pin in (RIGHT_PIN, WRONG_PIN):
        assert pin not in stderr, f"the PIN appeared in the service's stderr:\n{stderr}"
        assert pin not in stdout, f"the PIN appeared in the service's stdout:\n{stdout}"
