"""The terminal's Ed25519 signing key and the verifier's public keys: ids, files, rings.

Key files are created private (0600, :mod:`sscard.files`) and a private key file other users can
read is refused; every problem is a :class:`~sscard.errors.TokenKeyError` naming the file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sscard.errors import (
    PrivateFileError,
    TokenKeyError,
)
from sscard.files import create_private_file, read_regular_file

#: One public key, or several by key id or terminal id; a terminal id may map to several keys
#: (old and new during a rotation), told apart by the token's ``kid``.
PublicKeys: TypeAlias = Ed25519PublicKey | Mapping[str, Ed25519PublicKey | Sequence[Ed25519PublicKey]]


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's id (``kid``): the first 8 bytes of SHA-256 over its 32 raw bytes, in lower-case hex."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def key_ring(public_keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id, ready for :func:`verify_token`."""
    return {key_id(key): key for key in public_keys}


def generate_terminal_key() -> tuple[bytes, bytes]:
    """A new terminal key pair: (private key PEM, PKCS#8 unencrypted; public key PEM, SubjectPublicKeyInfo)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def write_terminal_key(
    private_path: str | os.PathLike[str], public_path: str | os.PathLike[str], *, overwrite: bool = False
) -> str:
    """Generate a key pair and write it: the private key mode 0600, the public key 0644.

    Existing files are refused unless ``overwrite``.  Returns the new key's id.
    """
    if not overwrite:  # check both first, so a refused public file leaves no private key behind
        for path in (Path(private_path), Path(public_path)):
            if path.exists():
                raise _exists(path)
    private_pem, public_pem = generate_terminal_key()
    _write(Path(private_path), private_pem, 0o600, overwrite)
    _write(Path(public_path), public_pem, 0o644, overwrite)
    return key_id(load_public_key(public_pem))


def _write(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    """Through :func:`sscard.files.create_private_file`: created with ``mode``, never through a
    symlink (``--force`` included), never into a FIFO or device (issue 11)."""
    if not overwrite and os.path.lexists(path):
        raise _exists(path)
    try:
        create_private_file(path, data, mode=mode, overwrite=overwrite)
    except PrivateFileError as exc:
        raise _key_file_error(exc, "cannot write", "无法写入") from None


def _key_file_error(exc: PrivateFileError, verb: str, verb_zh: str) -> TokenKeyError:
    """FILE_REFUSED of a key path as this module's TOKEN_KEY_ERROR (exit 7 either way)."""
    path, problem, problem_zh = exc.fields["path"], exc.fields["problem"], exc.fields["problem_zh"]
    return TokenKeyError(f"{verb} {path}: {problem}", f"{verb_zh} {path}：{problem_zh}", str(path))


def _exists(path: Path) -> TokenKeyError:
    return TokenKeyError(
        f"{path} already exists (give --force to replace it)", f"{path} 已存在（使用--force覆盖）", str(path)
    )


def load_private_key(path: str | os.PathLike[str], password: bytes | None = None) -> Ed25519PrivateKey:
    """The terminal's private key from a PEM file that only its owner can read.

    A file that group or others may read (``mode & 0o077``) is refused: the key would already
    have to be considered leaked.
    """
    where = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would wait for a writer for ever (issue 11); the
        # descriptor is then refused below as not a regular file.
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise TokenKeyError(
            f"private key file {where} does not exist", f"私钥文件 {where} 不存在", str(where)
        ) from None
    except OSError as exc:
        raise TokenKeyError(
            f"cannot read private key file {where}: {exc.strerror}", f"无法读取私钥文件 {where}", str(where)
        ) from None
    try:
        info = os.fstat(fd)  # the file actually opened, not whatever the path names a moment later
        if not stat.S_ISREG(info.st_mode):
            raise TokenKeyError(f"{where} is not a regular file", f"{where} 不是普通文件", str(where))
        if os.name == "posix" and info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise TokenKeyError(
                f"private key file {where} is open to other users (mode {mode:04o}); run chmod 600 {where}",
                f"私钥文件 {where} 可被其他用户访问（权限 {mode:04o}），请执行 chmod 600 {where}",
                str(where),
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read()
    except OSError as exc:
        raise TokenKeyError(
            f"cannot read private key file {where}: {exc.strerror}", f"无法读取私钥文件 {where}", str(where)
        ) from None
    finally:
        os.close(fd)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise TokenKeyError(
            f"{where} is not a PEM private key (or the password is wrong)",
            f"{where} 不是PEM格式的私钥（或口令错误）",
            str(where),
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise TokenKeyError(
            f"{where} holds a {_key_kind(key)} key, not an Ed25519 key", f"{where} 不是Ed25519密钥", str(where)
        )
    return key


def load_public_key(source: str | os.PathLike[str] | bytes) -> Ed25519PublicKey:
    """A public key from PEM bytes, or from a PEM file (public keys may be world-readable)."""
    where: str | None = None
    if isinstance(source, bytes):
        data = source
    else:
        where = str(source)
        try:
            data = read_regular_file(source)  # a FIFO or a device would hang or never end (issue 11)
        except PrivateFileError as exc:
            raise _key_file_error(exc, "cannot read public key file", "无法读取公钥文件") from None
        except FileNotFoundError:
            raise TokenKeyError(f"public key file {where} does not exist", f"公钥文件 {where} 不存在", where) from None
        except OSError as exc:
            raise TokenKeyError(
                f"cannot read public key file {where}: {exc.strerror}", f"无法读取公钥文件 {where}", where
            ) from None
    label = where or "the data"
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise TokenKeyError(f"{label} is not a PEM public key", f"{label} 不是PEM格式的公钥", where) from None
    if not isinstance(key, Ed25519PublicKey):
        raise TokenKeyError(
            f"{label} holds a {_key_kind(key)} key, not an Ed25519 key", f"{label} 不是Ed25519公钥", where
        )
    return key


def _key_kind(key: object) -> str:
    return type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey") or "different"
