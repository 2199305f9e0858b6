"""Session tokens: ``token verify`` one offline, ``token keygen`` a terminal's key pair (docs/tokens.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sscard.cli.util import EXIT_OK, Context, label_rows
from sscard.errors import UsageError

if TYPE_CHECKING:
    import argparse

    from sscard.cli.options import Builder


def cmd_token_verify(ctx: Context) -> int:
    """Check a session token offline (docs/tokens.md): signature, then expiry, then terminal."""
    from sscard.tokens import PublicKeys, key_ring, load_public_key, verify_token

    given = ctx.args.token
    given = ctx.stdin.read() if given == "-" else given
    paths = ctx.args.public_key or ([ctx.config.token_public_key] if ctx.config.token_public_key else [])
    if not paths:
        raise UsageError(
            "give --public-key PATH, or set [session] public_key",
            "请用--public-key指定公钥，或在配置[session]中设置public_key",
        )
    keys = [load_public_key(path) for path in paths]
    trusted: PublicKeys = keys[0] if len(keys) == 1 else key_ring(keys)
    leeway = ctx.config.token_leeway if ctx.args.leeway is None else ctx.args.leeway
    claims = verify_token(given.strip(), trusted, terminal_id=ctx.args.expected_terminal, leeway=leeway)
    data = {**claims.to_payload(), "issued": _local_time(claims.issued_at), "expires": _local_time(claims.expires_at)}
    rows = (
        ("会话编号", "Session id", claims.session_id),
        ("终端机编号", "Terminal id", claims.terminal_id),
        ("登录方式", "Method", claims.method),
        ("社会保障号码", "Social security number", claims.ssn),
        ("姓名", "Name", claims.name),
        ("卡号", "Card number", claims.card_number),
        ("卡识别码", "Card identification code", claims.card_id),
        ("签发时间", "Issued", data["issued"]),
        ("过期时间", "Expires", data["expires"]),
        ("密钥编号", "Key id", claims.key_id or "-"),
    )
    text = "Session token valid. 会话令牌有效。\n" + "\n".join(label_rows(rows))
    ctx.emit({"session": data}, text)
    return EXIT_OK


def cmd_token_keygen(ctx: Context) -> int:
    """A terminal's Ed25519 key pair: the private key mode 0600 (kept on the kiosk), the public key for verifiers."""
    from sscard.tokens import write_terminal_key

    kid = write_terminal_key(ctx.args.private, ctx.args.public, overwrite=ctx.args.force)
    ctx.emit(
        {"kid": kid, "private": ctx.args.private, "public": ctx.args.public},
        f"key id 密钥编号 {kid}\n  private key 私钥 {ctx.args.private} (mode 0600: keep it on the kiosk 仅存放于终端)\n"
        f"  public key 公钥 {ctx.args.public} (give it to the verifiers 提供给验证方)",
    )
    return EXIT_OK


def _local_time(seconds: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def build(b: Builder, sub: Any, name: str, text: str) -> None:
    from sscard.cli.options import json_opt

    def token_commands(p: argparse.ArgumentParser) -> None:
        token_sub = p.add_subparsers(dest="token_command", required=True, metavar="TOKEN_COMMAND")
        q = b.command(
            token_sub,
            "verify",
            "check a session token: signature, expiry, terminal / 校验会话令牌：签名、有效期、终端",
            cmd_token_verify,
            b.options(json_opt),
        )
        q.add_argument("token", metavar="TOKEN|-", help="the token, or - to read it from standard input")
        q.add_argument(
            "--public-key", action="append", metavar="PATH", help="trusted public key (PEM); repeat for several"
        )
        q.add_argument(
            "--terminal-id", dest="expected_terminal", metavar="ID", help="reject tokens issued by another terminal"
        )
        q.add_argument(
            "--leeway", type=float, metavar="SECONDS", help="tolerated clock skew (default [session] leeway, 30)"
        )
        q = b.command(
            token_sub,
            "keygen",
            "make a terminal's Ed25519 key pair for signing session tokens / 生成终端签发会话令牌用的Ed25519密钥对",
            cmd_token_keygen,
            b.options(json_opt),
        )
        q.add_argument("--private", required=True, metavar="OUT", help="private key file to write (mode 0600)")
        q.add_argument("--public", required=True, metavar="OUT", help="public key file to write")
        q.add_argument("--force", action="store_true", help="replace existing files")

    b.command(sub, name, text, None, build=token_commands)
