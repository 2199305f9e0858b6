"""``sscard doctor``'s checks of the rest of the kiosk: serial devices, the service, the clock."""

from __future__ import annotations

import os
import socket
import time

from sscard.cli.doctor.findings import (
    PROBE_TIMEOUT,
    Finding,
    Probe,
    Status,
)
from sscard.config import DEFAULT_SOURCE

SERIAL_DEVICES = (
    ("qr_port", "serial.qr", "QR scanner", "扫码器", "[qr] port", "[qr]中的'port'"),
    ("idcard_port", "serial.idcard", "ID-card reader", "身份证阅读器", "[idcard] port", "[idcard]中的'port'"),
)


def check_serial(p: Probe) -> list[Finding]:
    import errno
    import stat

    findings = []
    for attribute, check, en, zh, key, key_zh in SERIAL_DEVICES:
        path = getattr(p.config, attribute)
        if not path:
            continue
        if not os.path.exists(path):
            findings.append(
                Finding(
                    check,
                    Status.FAULT,
                    f"the {en} {path} is missing",
                    f"{zh}设备{path}不存在",
                    f"plug the {en} in; check its udev link (udevadm info {path}) and {key}",
                    f"请连接{zh}，并检查udev链接和{key_zh}",
                    {"path": path},
                )
            )
            continue
        try:
            if not stat.S_ISCHR(os.stat(path).st_mode):
                raise OSError(errno.ENOTTY, "not a character device")
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            os.close(fd)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                findings.append(
                    Finding(
                        check,
                        Status.OK,
                        f"the {en} {path} is present, in use (by the service?)",
                        f"{zh}设备{path}存在，正在使用中",
                        details={"path": path},
                    )
                )
                continue
            denied = exc.errno in (errno.EACCES, errno.EPERM)
            findings.append(
                Finding(
                    check,
                    Status.FAULT,
                    f"{'permission denied' if denied else 'cannot open'}: the {en} {path} ({exc.strerror})",
                    f"{'权限不足' if denied else '无法打开'}：{zh}设备{path}",
                    f"as root: sscard install-rules; usermod -aG sscard {p.user} (61-sscard-serial.rules)"
                    if denied
                    else f"check that {path} is the {en} ({key})",
                    "请以root运行`sscard install-rules`，并将用户加入sscard组" if denied else f"请检查{key_zh}",
                    {"path": path},
                )
            )
            continue
        findings.append(
            Finding(
                check, Status.OK, f"the {en} {path} can be opened", f"{zh}设备{path}可正常打开", details={"path": path}
            )
        )
    return findings or [
        Finding("serial", Status.SKIPPED, "no serial devices configured ([qr], [idcard])", "未配置串口设备")
    ]


def check_service_port(p: Probe) -> Finding:
    import http.client
    import json

    port = p.port or p.config.service_port
    configured = p.port is not None or p.config.origin("service_port") != DEFAULT_SOURCE
    headers = {"Host": f"127.0.0.1:{port}"}
    if p.config.service_token:
        headers["Authorization"] = f"Bearer {p.config.service_token}"
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
        try:
            connection.request("GET", "/v1/status", headers=headers)
            response = connection.getresponse()
            body = response.read(64 * 1024)
        finally:
            connection.close()
    except OSError as exc:
        if not configured:
            return Finding(
                "service.port",
                Status.WARNING,
                f"no service configured, and none answers on the default port {port}",
                f"未配置本地服务，默认端口{port}上也无响应",
                "if this kiosk uses it: set [service] port and start it (systemctl enable --now sscard)",
                "如需本地服务，请设置[service]中的'port'并启动：`systemctl enable --now sscard`",
                {"port": port},
            )
        return Finding(
            "service.port",
            Status.FAULT,
            f"the service does not answer on port {port} ({exc})",
            f"本地服务在端口{port}上无响应",
            "start it: systemctl start sscard (why it stopped: journalctl -u sscard)",
            "请启动：`systemctl start sscard`，停止原因见`journalctl -u sscard`",
            {"port": port},
        )
    try:
        status = json.loads(body) if response.status == 200 else {}
    except ValueError:
        status = {}
    if response.status == 200 and status.get("service") == "sscard":
        return Finding(
            "service.port",
            Status.OK,
            f"the service answers on port {port} (sscard {status.get('version')}, reader {status.get('reader')})",
            f"本地服务在端口{port}上响应正常",
            details={"port": port, "version": status.get("version")},
        )
    if response.status in (401, 403):
        return Finding(
            "service.port",
            Status.WARNING,
            f"the service answers on port {port} but refuses doctor (HTTP {response.status})",
            f"本地服务在端口{port}上响应，但拒绝了检查请求（HTTP {response.status}）",
            "give doctor the service's [service] token in its configuration",
            "请在配置中提供[service]中的'token'",
            {"port": port, "http_status": response.status},
        )
    return Finding(
        "service.port",
        Status.FAULT,
        f"something other than sscard answers on port {port} (HTTP {response.status})",
        f"端口{port}上响应的不是sscard本地服务",
        "find the program on that port (ss -ltnp) or move [service] port",
        "请用`ss -ltnp`查找占用该端口的程序，或修改[service]中的'port'",
        {"port": port, "http_status": response.status},
    )


def check_service_socket(p: Probe) -> Finding:
    path = p.socket_path or p.config.service_socket
    if not path:
        return Finding(
            "service.socket",
            Status.SKIPPED,
            "no national-interface socket configured ([service] socket)",
            "未配置国家标准接口套接字",
        )
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(PROBE_TIMEOUT)
            client.connect(path)
            client.sendall(b"SSCARD1\tsscard_doctor\tutf-8\t256\t0\n")  # an unknown function: no card I/O
            answer = client.recv(512)
    except OSError as exc:
        return Finding(
            "service.socket",
            Status.FAULT,
            f"the national-interface socket {path} does not answer ({exc.strerror or exc})",
            f"国家标准接口套接字{path}无响应",
            "start the service with it: systemctl start sscard.socket sscard (docs/native.md)",
            "请启动：`systemctl start sscard.socket sscard`",
            {"path": path},
        )
    head = answer.split(b"\n", 1)[0].split(b"\t")
    if len(head) == 2 and head[0].lstrip(b"-").isdigit() and head[1].isdigit():
        return Finding(
            "service.socket",
            Status.OK,
            f"the national-interface socket {path} answers",
            f"国家标准接口套接字{path}响应正常",
            details={"path": path},
        )
    return Finding(
        "service.socket",
        Status.FAULT,
        f"something other than sscard answers on {path}",
        f"{path}上响应的不是sscard",
        "check [service] socket",
        "请检查[service]中的'socket'",
        {"path": path},
    )


def check_clock(p: Probe) -> Finding:
    now = p.now()
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    installed = p.installed_at()
    if now < installed - 86_400:
        return Finding(
            "clock",
            Status.FAULT,
            f"the clock is behind ({shown}): earlier than sscard's installation",
            f"系统时间落后（{shown}），早于sscard的安装时间",
            "set the time and keep it synchronised: timedatectl set-ntp true",
            "请校准时间并启用时间同步：`timedatectl set-ntp true`",
            {"now": shown},
        )
    tokens = bool(p.config.session_key or p.config.token_public_key)
    if not tokens:
        return Finding(
            "clock",
            Status.OK,
            f"the clock is plausible ({shown}); no token key configured",
            f"系统时间合理（{shown}）；未配置令牌密钥",
            details={"now": shown},
        )
    synced = p.ntp_synchronized()
    if synced:
        return Finding(
            "clock",
            Status.OK,
            f"the clock is NTP-synchronised ({shown})",
            f"系统时间已同步（{shown}）",
            details={"now": shown, "ntp": True},
        )
    return Finding(
        "clock",
        Status.WARNING,
        f"the clock is {'not' if synced is False else 'perhaps not'} synchronised ({shown}): session tokens carry "
        f"its time and are checked against the backend's within {p.config.token_leeway:g} s",
        f"系统时间{'未' if synced is False else '可能未'}同步（{shown}），会话令牌的有效期依赖准确时间",
        "enable NTP: timedatectl set-ntp true (or chrony)",
        "请启用时间同步：`timedatectl set-ntp true`",
        {"now": shown, "ntp": synced},
    )
