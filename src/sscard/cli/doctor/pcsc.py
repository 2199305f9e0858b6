"""``sscard doctor``'s checks from pcscd up to the card and the PSAM, bottom of the stack first.

PC/SC goes through :mod:`sscard.transports.pcsc` and :mod:`sscard.readers`, so pyscard stays where
it belongs (docs/architecture.md); the card is only selected and its EF05 spec version read —
nothing personal, never a PIN.
"""

from __future__ import annotations

import contextlib

from sscard.cli.doctor.findings import (
    KIOSK_GROUP,
    PCSCD_SOCKET,
    POLKIT_RULE,
    UDEV_RULES,
    Finding,
    Probe,
    Status,
    not_checked,
)
from sscard.errors import AccessDenied, NoService, NotSsc, PsamMissing, ReaderBusy, SscardError

# --- the checks, bottom of the stack first ---------------------------------------------------


def check_pcscd_installed(p: Probe) -> Finding:
    path = p.which("pcscd") or next(
        (str(c) for c in (p.root / "usr/sbin/pcscd", p.root / "sbin/pcscd") if c.exists()), None
    )
    if path:
        return Finding("pcscd.installed", Status.OK, f"pcscd is installed ({path})", f"已安装pcscd（{path}）")
    return Finding(
        "pcscd.installed",
        Status.FAULT,
        "pcscd is not installed",
        "未安装pcscd",
        "install it: apt-get install pcscd (and vsmartcard-vpcd for the virtual reader)",
        "请安装：`apt-get install pcscd`",
    )


def check_pcscd_running(p: Probe) -> Finding:
    pids = p.pcscd_pids(p.root)
    if pids:
        return Finding(
            "pcscd.running", Status.OK, f"pcscd is running (pid {pids[0]})", f"pcscd正在运行（进程号{pids[0]}）"
        )
    if (p.root / PCSCD_SOCKET).exists() and (p.root / "run/systemd/system").is_dir():
        return Finding(
            "pcscd.running",
            Status.OK,
            "pcscd is not running now; systemd starts it on first use (pcscd.socket)",
            "pcscd当前未运行，由systemd按需启动",
        )
    return Finding(
        "pcscd.running",
        Status.FAULT,
        "pcscd is not running",
        "pcscd未运行",
        "start it: systemctl start pcscd.socket pcscd (without systemd: pcscd)",
        "请启动：`systemctl start pcscd.socket pcscd`",
    )


def check_pcscd_answering(p: Probe) -> Finding:
    from sscard.transports.pcsc import list_readers

    try:
        p.readers = list_readers()
    except AccessDenied as exc:
        p.pcscd_error = exc
        return Finding(
            "pcscd.answering",
            Status.FAULT,
            f"permission denied: pcscd refuses user {p.user} (polkit)",
            "权限不足：pcscd拒绝当前用户访问（polkit）",
            f"as root: sscard install-rules; usermod -aG {KIOSK_GROUP} {p.user}; then log in again",
            f"请以root运行`sscard install-rules`和`usermod -aG {KIOSK_GROUP} USER`，然后重新登录",
            {"error": exc.to_dict()},
        )
    except SscardError as exc:
        p.pcscd_error = exc
        return Finding(
            "pcscd.answering",
            Status.FAULT,
            "pcscd does not answer" + ("" if isinstance(exc, NoService) else f" ({exc.message})"),
            "pcscd无响应",
            "restart it: systemctl restart pcscd (its log: journalctl -u pcscd)",
            "请重启：`systemctl restart pcscd`，日志见`journalctl -u pcscd`",
            {"error": exc.to_dict()},
        )
    count = len(p.readers)
    return Finding(
        "pcscd.answering", Status.OK, f"pcscd answers ({count} readers)", f"pcscd响应正常（{count}个读卡器）"
    )


def check_readers(p: Probe) -> Finding:
    from sscard.readers import card_readers, scheme_of, slot_kind

    if p.readers is None:
        return not_checked("readers", "pcscd does not answer", "pcscd无响应")
    rows = [{"name": name, "kind": slot_kind(name, p.config).value} for name in p.readers]
    if not p.readers:
        return Finding(
            "readers",
            Status.FAULT,
            "no card reader: pcscd lists none",
            "没有读卡器：pcscd未列出任何读卡器",
            "plug the reader in and check its driver (lsusb; the CCID driver); "
            "the virtual reader needs vsmartcard-vpcd",
            "请连接读卡器并检查驱动；虚拟读卡器需安装'vsmartcard-vpcd'",
        )
    names = ", ".join(p.readers)
    scheme, _ = scheme_of(p.config.reader)
    if scheme.prefix == "" and not card_readers(p.readers, p.config):
        return Finding(
            "readers",
            Status.FAULT,
            f"no reader for the card matches [reader] name {p.config.reader!r}; readers: {names}",
            "没有与[reader]中的'name'匹配的读卡器",
            "correct [reader] name (sscard readers lists the names)",
            "请修改[reader]中的'name'（`sscard readers`可列出读卡器名称）",
            {"readers": rows},
        )
    return Finding(
        "readers",
        Status.OK,
        f"{len(p.readers)} readers: {names}",
        f"共{len(p.readers)}个读卡器",
        details={"readers": rows},
    )


def check_permission(p: Probe) -> Finding:
    if p.user == "root":
        return Finding(
            "permission", Status.OK, "user root needs no rules", "root用户无需权限规则", details={"user": "root"}
        )
    missing_en: list[str] = []
    missing_zh: list[str] = []
    members = p.group_members(KIOSK_GROUP)
    if members is None:
        missing_en.append(f"group {KIOSK_GROUP} does not exist")
        missing_zh.append(f"{KIOSK_GROUP}组不存在")
    elif p.user not in members:
        missing_en.append(f"{p.user} is not in group {KIOSK_GROUP}")
        missing_zh.append(f"该用户不在{KIOSK_GROUP}组中")
    features = p.pcscd_features() or ""
    if "polkit" in features and not (p.root / POLKIT_RULE).exists():
        missing_en.append(f"the polkit rule /{POLKIT_RULE} is not installed")
        missing_zh.append(f"未安装polkit规则/{POLKIT_RULE}")
    absent = [f"/{rule}" for rule in UDEV_RULES if not (p.root / rule).exists()]
    if absent:
        missing_en.append(f"udev rules not installed: {', '.join(absent)}")
        missing_zh.append(f"未安装udev规则{'、'.join(absent)}")
    details = {"user": p.user, "polkit": "polkit" in features, "missing": missing_en}
    if not missing_en:
        return Finding(
            "permission", Status.OK, f"user {p.user} has the rules and the group", "用户权限完整", details=details
        )
    denied = isinstance(p.pcscd_error, AccessDenied)
    return Finding(
        "permission",
        Status.FAULT if denied else Status.WARNING,
        ("permission denied: " if denied else "permissions incomplete: ") + "; ".join(missing_en),
        ("权限不足：" if denied else "权限不完整：") + "；".join(missing_zh),
        f"as root: sscard install-rules; groupadd --system {KIOSK_GROUP}; usermod -aG {KIOSK_GROUP} {p.user}; "
        "udevadm control --reload-rules; udevadm trigger; systemctl restart pcscd (udev/README.md)",
        f"请以root运行`sscard install-rules`、`groupadd --system {KIOSK_GROUP}`、`usermod -aG {KIOSK_GROUP} USER`，"
        "然后重新加载udev规则并重启pcscd",
        details,
    )


def check_card(p: Probe) -> Finding:
    from sscard.readers import open_reader, scheme_of

    scheme, _ = scheme_of(p.config.reader)
    if scheme.prefix == "" and not p.readers:
        return not_checked("card", "no reader", "没有读卡器")
    try:
        reader = open_reader(p.config.reader, config=p.config)
        if not reader.card_present():
            return Finding(
                "card",
                Status.WARNING,
                f"no card in {reader.name}",
                "读卡器中没有卡",
                "insert a social security card to check reading",
                "请插入社会保障卡后再检查",
                {"reader": reader.name},
            )
        transport = reader.connect()
        try:
            name, atr = transport.name, transport.atr.hex().upper()
        finally:
            transport.close()
        p.card_reader = reader
    except AccessDenied as exc:
        return Finding(
            "card",
            Status.FAULT,
            "permission denied: pcscd refuses this user the card (polkit access_card)",
            "权限不足：pcscd拒绝当前用户使用卡片（polkit）",
            "as root: sscard install-rules; usermod -aG sscard USER (udev/README.md)",
            "请以root运行`sscard install-rules`，并将用户加入sscard组",
            {"error": exc.to_dict()},
        )
    except ReaderBusy as exc:
        return Finding(
            "card",
            Status.WARNING,
            "the reader is held by another program",
            "读卡器正被其他程序占用",
            "close the other program, or let the service do the reading (sscard serve)",
            "请关闭占用读卡器的程序",
            {"error": exc.to_dict()},
        )
    except SscardError as exc:
        return Finding(
            "card",
            Status.FAULT,
            f"the card cannot be used: {exc.message}",
            f"卡片无法使用：{exc.message_zh}",
            "take the card out and insert it again, chip first; clean the contacts; try another card",
            "请取出卡片重新插入（芯片朝里），清洁触点，或换一张卡试试",
            {"error": exc.to_dict()},
        )
    return Finding(
        "card",
        Status.OK,
        f"a card is in {name}, ATR {atr}",
        f"读卡器中有卡，复位信息（ATR）{atr}",
        details={"reader": name, "atr": atr},
    )


def check_ssc(p: Probe) -> Finding:
    from sscard.apdu.processors import standard_stack
    from sscard.ssc.application import SscApplication

    if p.card_reader is None:
        return not_checked("card.ssc", "no card", "读卡器中没有可用的卡")
    try:
        with contextlib.closing(p.card_reader.connect()) as transport, transport.transaction():
            app = SscApplication(standard_stack(transport))
            info = app.select()
            version = app.read_element(0x03)  # EF05 tag 03, the spec version: free to read, not personal
    except NotSsc as exc:
        return Finding(
            "card.ssc",
            Status.WARNING,
            f"not a social security card ({exc.detail or 'SELECT SSSE refused'})",
            "不是社会保障卡（SELECT SSSE被拒绝）",
            "insert a resident's social security card; a bank card or another card cannot be read as one",
            "请插入社会保障卡；银行卡等其他卡片无法按社会保障卡读取",
            {"error": exc.to_dict()},
        )
    except SscardError as exc:
        return Finding(
            "card.ssc",
            Status.FAULT,
            f"the social security application does not answer: {exc.message}",
            f"社会保障应用无法访问：{exc.message_zh}",
            "insert the card again; if it persists the card is damaged (a new card from the issuing office)",
            "请重新插卡；如仍失败，卡片可能已损坏，请到发卡机构换卡",
            {"error": exc.to_dict()},
        )
    shown = version or "?"
    return Finding(
        "card.ssc",
        Status.OK,
        f"a social security card, spec version {shown}, algorithm {info.algorithm_name}",
        f"社会保障卡，规范版本{shown}，算法{info.algorithm_name}",
        details={"spec_version": version, "algorithm": info.algorithm_name},
    )


def check_psam(p: Probe) -> Finding:
    service = p.config.key_service
    if service == "none":
        return Finding(
            "psam",
            Status.SKIPPED,
            "no key service configured ([keys] service)",
            "未配置密钥服务（[keys]中的'service'）",
        )
    if service == "hsm":
        return Finding("psam", Status.OK, "HSM two-step: the keys are at the backend", "加密机两步模式：密钥在后台")
    if service == "software":
        from sscard.terminal.keys import open_key_service

        try:
            open_key_service(p.config).close()
        except SscardError as exc:
            return Finding(
                "psam",
                Status.FAULT,
                f"software keys: {exc.message}",
                f"软件密钥：{exc.message_zh}",
                "fix [keys] file / keyset / allow_software",
                "请检查[keys]中的'file'、'keyset'和'allow_software'",
                {"error": exc.to_dict()},
            )
        return Finding(
            "psam",
            Status.WARNING,
            "software keys: for the simulator and tests only",
            "软件密钥仅用于模拟卡和测试",
            'a kiosk uses a PSAM: [keys] service = "psam" and the PSAM in the SAM slot',
            "自助终端请使用PSAM：设置[keys]中的'service'为'psam'，并将PSAM插入SAM卡座",
        )
    return _check_psam_card(p)


def _check_psam_card(p: Probe) -> Finding:
    from sscard.apdu.command import Command
    from sscard.apdu.processors import standard_stack
    from sscard.psam.profile import load_profile
    from sscard.readers import open_sam_reader, scheme_of

    scheme, _ = scheme_of(p.config.sam_reader)
    if scheme.prefix == "" and p.readers is None:
        return not_checked("psam", "pcscd does not answer", "pcscd无响应")
    try:
        profile = load_profile(p.config.key_profile)
        reader = open_sam_reader(p.config)
        if not reader.card_present():
            raise PsamMissing(f"the SAM slot {reader.name!r} is empty")
        with contextlib.closing(reader.connect()) as transport, transport.transaction():
            answer = standard_stack(transport).send(Command.from_bytes(profile.psam_select))
        if not answer.ok:
            raise PsamMissing(f"the card in {reader.name!r} has no PSAM application ({answer.sw:04X})")
    except SscardError as exc:
        return Finding(
            "psam",
            Status.FAULT,
            f"PSAM key service: {exc.message}",
            f"PSAM密钥服务不可用：{exc.message_zh}",
            "insert the PSAM into the SAM slot and set [reader] sam to that slot (sscard readers shows the slots)",
            "请将PSAM插入SAM卡座，并将[reader]中的'sam'设为该卡座",
            {"error": exc.to_dict()},
        )
    return Finding(
        "psam",
        Status.OK,
        f"the PSAM answers in {reader.name} (profile {profile.name})",
        "PSAM响应正常",
        details={"reader": reader.name, "profile": profile.name},
    )


#: The serial devices of the configuration: (config field, check id, English, Chinese, section).
