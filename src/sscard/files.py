"""Files that hold personal data or keys: created private, never through a symlink, never a FIFO.

One helper for every file sscard writes that a stranger must not read — traces from
``sscard record``, photos (``read --photo``), ``read --output`` (the HSM step-1 line, the card),
the terminal's token keys — and one for every small file it reads that could be a trap (key
files).  Issue 11 found each of them done differently: traces and photos created with the
umask's mode (0644: readable by every local user), ``token keygen --force`` writing through a
symlink planted at the key path, and a key path that is a FIFO hanging the process.

* :func:`create_private_file` creates the file with its final mode in the ``open`` call itself
  (0600 unless told otherwise; no window in which it is readable, no chmod afterwards), with
  ``O_NOFOLLOW`` so a symlink is refused rather than followed, and refuses anything that is not
  a regular file (a FIFO, a device, a directory).  Replacing an existing file unlinks it and
  creates a new one with ``O_EXCL``, so the old file's mode or owner never carries over and a
  symlink slipped in between is refused too.
* :func:`read_regular_file` opens with ``O_NONBLOCK`` (opening a FIFO for reading would block
  until a writer comes), checks the opened descriptor is a regular file, and reads at most
  ``limit`` bytes (``/dev/zero`` would never end).

Layer 0 (docs/architecture.md): it imports only :mod:`sscard.errors`, so every layer may use it.
"""

from __future__ import annotations

import os
import stat

from sscard.errors import PrivateFileError

#: The mode of a file of personal data or of a private key.
PRIVATE_MODE = 0o600
#: The most a key file may hold (a PEM key is a few hundred bytes).
KEY_FILE_LIMIT = 64 * 1024

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)", "命名管道"),
    (stat.S_ISCHR, "a character device", "字符设备"),
    (stat.S_ISBLK, "a block device", "块设备"),
    (stat.S_ISSOCK, "a socket", "套接字"),
    (stat.S_ISDIR, "a directory", "目录"),
    (stat.S_ISLNK, "a symbolic link (never followed for a private file)", "符号链接（私密文件不跟随链接）"),
)


def _not_regular(path: str, mode: int) -> PrivateFileError:
    for test, what, what_zh in _KINDS:
        if test(mode):
            return PrivateFileError(path, f"it is {what}, not a regular file", f"它是{what_zh}，不是普通文件")
    return PrivateFileError(path, "it is not a regular file", "不是普通文件")


def _os_error(path: str, exc: OSError) -> PrivateFileError:
    return PrivateFileError(path, f"cannot write it ({exc.strerror or type(exc).__name__})", "无法写入")


def check_private_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
    """Refuse, before any work is done, a path :func:`create_private_file` would refuse.

    A front end calls it before it reads a card, so a resident's card is not read for a file that
    cannot be written; :func:`create_private_file` checks again when it writes.
    """
    where = os.fspath(path)
    try:
        info = os.lstat(where)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _os_error(where, exc) from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(where, info.st_mode)
    if not overwrite:
        raise PrivateFileError(where, "it already exists", "文件已存在")


def create_private_file(
    path: str | os.PathLike[str], data: bytes, *, mode: int = PRIVATE_MODE, overwrite: bool = True
) -> None:
    """Write ``data`` to a new regular file at ``path`` created with ``mode`` (0600).

    An existing regular file is replaced when ``overwrite`` (else FILE_REFUSED); a symlink, FIFO,
    device or directory at ``path`` is always FILE_REFUSED, and nothing is written through it.
    """
    where = os.fspath(path)
    check_private_path(where, overwrite=overwrite)
    if os.path.lexists(where):
        try:
            os.unlink(where)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _os_error(where, exc) from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(where, flags, mode)
    except FileExistsError:  # something appeared at the path since the check: never write through it
        raise PrivateFileError(where, "something else was created at this path meanwhile", "该路径已被占用") from None
    except OSError as exc:
        raise _os_error(where, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise _os_error(where, exc) from None


def read_regular_file(path: str | os.PathLike[str], *, limit: int = KEY_FILE_LIMIT) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; FIFOs and devices are FILE_REFUSED.

    ``FileNotFoundError`` and other ``OSError`` s of the open are raised as they are, for the caller
    to word ("the key file does not exist").
    """
    where = os.fspath(path)
    fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)  # the file actually opened, not what the path names a moment later
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(where, info.st_mode)
        if info.st_size > limit:
            raise PrivateFileError(where, f"it is larger than {limit} bytes", "文件过大")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise PrivateFileError(where, f"it is larger than {limit} bytes", "文件过大")
        return b"".join(chunks)
    finally:
        os.close(fd)
