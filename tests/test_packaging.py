"""Packaging (issue 11, item 13): the sdist runs the test suite, the wheel carries the kiosk rules.

Both are built here, without network access, through setuptools' own PEP 517 hooks (what ``pip``
and ``python -m build`` call), from this source tree: the sdist is unpacked into a temporary
directory and a part of the test suite runs from it (conftest, support modules, fixtures and docs
included, the sscard package imported from the sdist's ``src``); the wheel is unzipped and its
``sscard install-rules --print`` must print the packaged udev and polkit files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Test modules run from the unpacked sdist: they read fixtures/, docs/, the rules and the sources.
SDIST_TESTS = (
    "tests/test_errors.py",
    "tests/test_messages_zh.py",
    "tests/test_records.py",
    "tests/test_fixtures.py",
    "tests/test_udev.py",
    "tests/test_architecture.py",
)


def build(hook: str, out: Path) -> Path:
    """Run setuptools' PEP 517 ``hook`` in a child process (it writes into the source tree's egg-info)."""
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0 and "invalid command 'bdist_wheel'" in result.stderr:
        pytest.fail("the wheel package is missing: ./run.sh setup installs it (the [test] extra)")
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSCARD_", "PYTEST_"))}
    env.update(extra)
    return env


def test_the_test_suite_runs_from_the_sdist(tmp_path: Path) -> None:
    sdist = build("build_sdist", tmp_path / "dist")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
        archive.extractall(tmp_path / "unpacked", filter="data")
    top = tmp_path / "unpacked" / sdist.name.removesuffix(".tar.gz")
    for needed in ("LICENSE", "run.sh", "tests/conftest.py", "tests/support/pcsc_env.py",
                   "tests/support/ci_guard.py", "tests/support/fixtures.py",
                   "fixtures/typical-read.apdu", "docs/cli.md", "udev/README.md", "benchmarks/run.py",
                   "src/sscard/rules/60-sscard-ccid.rules", "src/sscard/__main__.py"):  # fmt: skip
        assert f"{top.name}/{needed}" in names, needed
    env = clean_env(PYTHONPATH=str(top / "src"), XDG_CONFIG_HOME=str(tmp_path))
    where = subprocess.run(
        [sys.executable, "-c", "import sscard; print(sscard.__file__)"],
        cwd=top,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip().startswith(str(top / "src")), where  # the sdist's sscard, not this tree's
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "not pcscd", "-p", "no:cacheprovider", *SDIST_TESTS],
        cwd=top,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_the_wheel_carries_the_rules_and_python_dash_m(tmp_path: Path) -> None:
    wheel = build("build_wheel", tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for needed in (
        "sscard/rules/60-sscard-ccid.rules",
        "sscard/rules/61-sscard-serial.rules",
        "sscard/rules/polkit/50-sscard-pcscd.rules",
        "sscard/__main__.py",
        "sscard/py.typed",
        "sscard/service/bridges/ssc-ws.toml",  # the vendor-bridge profiles (docs/service.md)
        "sscard/service/bridges/idcard-ws.toml",
        "sscard/service/bridges/http-entry.toml",
    ):
        assert needed in names, needed
    assert any(name.endswith(".dist-info/LICENSE") for name in names)
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    text = (tmp_path / "site" / metadata).read_text(encoding="utf-8")
    assert "License :: OSI Approved :: Apache Software License" in text
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "sscard = sscard.cli:run" in (tmp_path / "site" / entry_points).read_text(encoding="utf-8")
    env = clean_env(PYTHONPATH=str(tmp_path / "site"), XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "sscard", "install-rules", "--print"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "# ---- /etc/udev/rules.d/61-sscard-serial.rules" in result.stdout
    assert "# ---- /etc/polkit-1/rules.d/50-sscard-pcscd.rules" in result.stdout
    bridges = subprocess.run(
        [sys.executable, "-m", "sscard", "serve", "--list-bridges"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bridges.returncode == 0 and "ssc-ws" in bridges.stdout, bridges.stderr
    assert (
        (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("\n                                 Apache License")
    )
