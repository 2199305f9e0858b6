#!/usr/bin/env bash
# sscard's two set-up commands, for a Debian 12 machine (root, or a user with sudo):
#
#   ./run.sh demo [ARGS]   read a card through PC/SC (the simulated card in pcscd's vpcd reader
#                          when no real reader is attached); ARGS go to `sscard demo`
#   ./run.sh test [ARGS]   ruff, mypy, then every test; ARGS go to pytest
#   ./run.sh setup         only install what the two commands need
#   ./run.sh help
#
# Each step prints one line; the output of installers is kept in a log and shown only on failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=.venv
STAMP="$VENV/.sscard-install-stamp"
PYTHON=${PYTHON:-python3}
PCSCD_SOCKET=${PCSCLITE_CSOCK_NAME:-/run/pcscd/pcscd.comm}
# pcscd and its vpcd virtual reader for the demo and the end-to-end tests; libpcsclite-dev, swig,
# pkg-config and a C compiler because pyscard is built from source (PyPI has only an sdist);
# chromium and its chromedriver for the kiosk page's browser test (tests/test_browser.py); CJK fonts so
# its screenshots show the Chinese text; opensc for its opensc-tool, the C peer the benchmark suite
# compares `sscard read` with (benchmarks/process.py); zsh, to check `sscard completion zsh`'s script
# (tests/test_cli_polish.py; bash is there anyway); make and gcc for native/'s libSSCardDriver.so and
# libHeaSecReadInfo.so, libjansson-dev for the latter's Init JSON (docs/native.md);
# prometheus for its promtool, which checks and unit-tests docs/fleet-alerts.yml (tests/test_fleet_alerts.py;
# 19 MB, ~11 s to install; where systemd runs, the server Debian enables is disabled again below).
DEB_PACKAGES=(pcscd vsmartcard-vpcd libpcsclite-dev swig pkg-config chromium chromium-driver fonts-noto-cjk opensc zsh make libjansson-dev
    prometheus)

step() { printf '==> %s\n' "$*"; }
die() {
    printf 'run.sh: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# Run a command with its output in a log file; on failure show the end of the log and stop.
quietly() {
    local log rc=0
    log=$(mktemp "${TMPDIR:-/tmp}/sscard-run.XXXXXX")
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf 'run.sh: failed (exit %s): %s\n' "$rc" "$*" >&2
        tail -n 60 "$log" >&2
        printf 'run.sh: full log: %s\n' "$log" >&2
        exit "$rc"
    fi
    rm -f "$log"
}

# Set SUDO to what runs a command as root ("" for root, sudo otherwise), or stop with what to run.
SUDO=()
need_root() {
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        die "this needs root and sudo is not installed; as root, run: $*"
    fi
}

deb_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

ensure_packages() {
    local wanted=("${DEB_PACKAGES[@]}") missing=() pkg
    command -v gcc >/dev/null 2>&1 || wanted+=(gcc)
    # Debian's own python3 needs these for a venv and for compiling pyscard; pyenv's has both.
    if [ "$(command -v "$PYTHON" || true)" = /usr/bin/python3 ]; then
        wanted+=(python3-venv python3-dev)
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        step "not a Debian system: make sure these (or their equivalents) are installed: ${wanted[*]}"
        return 0
    fi
    for pkg in "${wanted[@]}"; do
        deb_installed "$pkg" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        step "Debian packages present: ${wanted[*]}"
        return 0
    fi
    need_root apt-get install --no-install-recommends "${missing[@]}"
    step "installing Debian packages: ${missing[*]}"
    quietly "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    quietly "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    # Debian's prometheus package (installed for its promtool only) enables a Prometheus server
    # listening on every interface: a test set-up must not leave that running on a kiosk.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
        step "disabling the Prometheus server Debian enabled (only promtool is used)"
        quietly "${SUDO[@]}" systemctl disable --now prometheus || true
    fi
    # A pcscd that was already running reads /etc/reader.conf.d only at start.
    if [[ " ${missing[*]} " == *" vsmartcard-vpcd "* ]] && pgrep -x pcscd >/dev/null 2>&1; then
        if [ -d /run/systemd/system ]; then
            step "restarting pcscd so that it loads the vpcd reader"
            quietly "${SUDO[@]}" systemctl restart pcscd
        else
            step "note: restart pcscd so that it loads the new vpcd reader"
        fi
    fi
}

ensure_venv() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python 3.10 or newer"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        die "$PYTHON is older than 3.10: set PYTHON=/path/to/python3.10+"
    if [ ! -x "$VENV/bin/python" ]; then
        step "creating $VENV with $("$PYTHON" --version 2>&1)"
        quietly "$PYTHON" -m venv "$VENV"
        rm -f "$STAMP"
    fi
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$STAMP" 2>/dev/null || true)" = "$want" ]; then
        step "$VENV is up to date with pyproject.toml"
        return 0
    fi
    step "installing sscard and its test tools into $VENV (builds pyscard from source the first time)"
    quietly "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -e '.[test]'
    printf '%s\n' "$want" >"$STAMP"
}

# pcscd answers when a PC/SC context can be established through its socket.
pcscd_alive() {
    [ -S "$PCSCD_SOCKET" ] || return 1
    timeout 10 "$VENV/bin/python" -c '
import sys
from smartcard.scard import SCARD_S_SUCCESS, SCARD_SCOPE_USER, SCardEstablishContext, SCardReleaseContext
rc, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
if rc != SCARD_S_SUCCESS:
    sys.exit(1)
SCardReleaseContext(ctx)
' >/dev/null 2>&1
}

ensure_pcscd() {
    if pcscd_alive; then
        step "pcscd is running"
        return 0
    fi
    if pgrep -x pcscd >/dev/null 2>&1; then
        die "pcscd is running but does not answer on $PCSCD_SOCKET; restart it (as root: pkill -x pcscd; pcscd)"
    fi
    local pcscd_bin
    pcscd_bin=$(command -v pcscd || echo /usr/sbin/pcscd)
    need_root "$pcscd_bin"
    step "starting pcscd"
    quietly "${SUDO[@]}" "$pcscd_bin" # daemonises
    local _
    for _ in $(seq 50); do
        pcscd_alive && return 0
        sleep 0.2
    done
    die "pcscd did not come up on $PCSCD_SOCKET; run 'pcscd -f -d' as root to see why"
}

# libSSCardDriver.so, libHeaSecReadInfo.so and their ASan/UBSan variants (tests/test_native*.py load them).
build_native() {
    step "make -C native (libSSCardDriver.so, libHeaSecReadInfo.so)"
    quietly make -C native all asan
}

run_tests() {
    local failed=() status=0
    mkdir -p test-output
    step "ruff check src tests benchmarks"
    "$VENV/bin/ruff" check --quiet src tests benchmarks || failed+=(ruff)
    step "ruff format --check src tests benchmarks"
    "$VENV/bin/ruff" format --check --quiet src tests benchmarks || failed+=(ruff-format)
    step "mypy (strict, on src/sscard)"
    "$VENV/bin/mypy" || failed+=(mypy)
    step "pytest (junit report: test-output/junit.xml)"
    "$VENV/bin/pytest" --junitxml=test-output/junit.xml "$@" || status=$?
    if [ "${#failed[@]}" -gt 0 ]; then
        printf 'run.sh: %s failed\n' "${failed[*]}" >&2
        [ "$status" -ne 0 ] || status=1
    fi
    return "$status"
}

cmd=${1:-help}
[ "$#" -eq 0 ] || shift
case "$cmd" in
demo)
    ensure_packages
    ensure_venv
    ensure_pcscd
    step "sscard demo $*"
    exec "$VENV/bin/sscard" demo "$@"
    ;;
test)
    ensure_packages
    ensure_venv
    build_native
    # pcscd need not run: the end-to-end fixture in tests/conftest.py starts one when none answers.
    status=0
    run_tests "$@" || status=$?
    exit "$status"
    ;;
setup)
    ensure_packages
    ensure_venv
    build_native
    ;;
help | -h | --help)
    usage
    ;;
*)
    usage >&2
    die "unknown command: $cmd"
    ;;
esac
