"""Where log records go and in which form: journald-friendly text (default), JSON lines, a rotated file.

Why a module of its own at the bottom of the stack (layer 0): the command line configures logging
for every command, the service runs uvicorn's loggers into the same handlers, and any layer may
tag what it logs with the reader or the request it is about (:func:`log_context`), so the
formatter must be importable from everywhere and import nothing above :mod:`sscard.errors` and
:mod:`sscard.privacy`.

* ``text`` is the line the command line always wrote (``LEVEL logger: message``): systemd's
  journal adds the time and the unit itself.
* ``json`` is one object per line with stable keys, for log shippers (docs/cli.md "Logs"):
  ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``event`` (the message),
  ``code`` (the stable error code of an :class:`~sscard.errors.SscardError` the record carries,
  else null), ``reader``, ``request_id`` — every key on every line, null when unknown — and
  ``exception`` only when there is a traceback.
* A log file (``--log-file`` / ``[logging] file``) is rotated by the standard library's
  :class:`logging.handlers.RotatingFileHandler`, created 0600 (it may hold readers' names and
  request paths) and never through a symlink.

Personal data: the process's record factory (:func:`sscard.privacy.mask_log_records`) masks
messages and tracebacks before any handler sees them; the JSON formatter masks every text it
writes once more with the same :func:`sscard.privacy.mask_text`, so a program that embeds
sscard and uses :class:`JsonFormatter` without the factory is masked too.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from typing import Any, TextIO

from sscard.errors import SscardError, UsageError
from sscard.privacy import mask_text

#: The forms ``--log-format`` / ``[logging] format`` accept.
LOG_FORMATS = ("text", "json")
#: The text form: unchanged since the first release (the journal adds time and unit).
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: The keys of every JSON line, in this order.
JSON_KEYS = ("time", "level", "logger", "event", "code", "reader", "request_id")
#: Rotation defaults: ``[logging] max_bytes`` and ``[logging] backups``.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("sscard_request_id", default=None)
_reader: contextvars.ContextVar[str | None] = contextvars.ContextVar("sscard_reader", default=None)


@contextlib.contextmanager
def log_context(*, request_id: str | None = None, reader: str | None = None) -> Iterator[None]:
    """Tag every record logged inside (this thread or task, and what it copies the context to)
    with ``request_id`` and/or ``reader``; None leaves the outer value."""
    tokens = []
    if request_id is not None:
        tokens.append((_request_id, _request_id.set(request_id)))
    if reader is not None:
        tokens.append((_reader, _reader.set(reader)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_request_id() -> str | None:
    """The request the current code runs for (the service sets it per HTTP request), or None."""
    return _request_id.get()


def _code(record: logging.LogRecord) -> str | None:
    """The stable error code a record carries: ``extra={"code": …}``, its exception, or an argument."""
    given = record.__dict__.get("code")
    if isinstance(given, str):
        return given
    if record.exc_info and isinstance(record.exc_info[1], SscardError):
        return record.exc_info[1].code
    args = record.args if isinstance(record.args, tuple) else ()
    for arg in args:
        if isinstance(arg, SscardError):
            return arg.code
    return None


def _masked(value: object) -> str | None:
    return None if value is None else mask_text(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record on one line (newlines inside are escaped), keys :data:`JSON_KEYS`."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z"
        reader = record.__dict__.get("reader", _reader.get())
        request_id = record.__dict__.get("request_id", _request_id.get())
        payload: dict[str, Any] = {
            "time": stamp,
            "level": record.levelname,
            "logger": record.name,
            "event": mask_text(record.getMessage()),
            "code": _code(record),
            "reader": _masked(reader),
            "request_id": _masked(request_id),
        }
        if record.exc_info or record.exc_text:
            text = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
            payload["exception"] = mask_text(text)
        if record.stack_info:
            payload["stack"] = mask_text(record.stack_info)
        return json.dumps(payload, ensure_ascii=False)


def private_rotating_handler(path: str, max_bytes: int, backups: int) -> logging.Handler:
    """The stdlib's :class:`~logging.handlers.RotatingFileHandler`, each file created 0600, never
    through a symlink, never a FIFO.  ``logging.handlers`` (socket, pickle, queue…) is imported
    only here, when a log file is asked for: start-up (tests/test_cli_startup.py)."""
    import logging.handlers

    class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
        def _open(self) -> io.TextIOWrapper:  # the stdlib's hook for opening (and reopening after a rollover)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(self.baseFilename, flags | os.O_NONBLOCK, 0o600)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(f"{self.baseFilename} is not a regular file")
                os.set_blocking(fd, True)
                return io.TextIOWrapper(
                    io.FileIO(fd, "a"), encoding=self.encoding or "utf-8", errors=self.errors, line_buffering=False
                )
            except BaseException:
                os.close(fd)
                raise

    return PrivateRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")


def _ours(handler: logging.Handler) -> bool:
    return bool(getattr(handler, "sscard_handler", False))


def configure_logging(
    level: int,
    stream: TextIO,
    form: str = "text",
    file: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    backups: int = DEFAULT_BACKUPS,
) -> None:
    """Send the process's log records to ``stream`` (or ``file``, rotated) as ``form``.

    The default (text, no file) is the ``logging.basicConfig`` call the command line always made,
    unchanged.  Otherwise the handler this module installed before is replaced, so the command
    line may call it again once the configuration file has been read.  A file that cannot be
    opened is a USAGE_ERROR naming it.
    """
    if form not in LOG_FORMATS:
        raise UsageError(f"log format must be text or json, not {form!r}", f"日志格式必须是'text'或'json'：{form!r}")
    root = logging.getLogger()
    default = form == "text" and file is None
    for old in [h for h in root.handlers if _ours(h) or (not default and getattr(h, "sscard_text", False))]:
        root.removeHandler(old)
        old.close()  # a file handler closes its file; a stream handler leaves the stream open
    if default:
        before = set(root.handlers)
        logging.basicConfig(level=level, stream=stream, format=TEXT_FORMAT)
        for new in set(root.handlers) - before:
            new.sscard_text = True  # type: ignore[attr-defined]
        return
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(stream)
    else:
        try:
            handler = private_rotating_handler(file, max_bytes, backups)
        except OSError as exc:
            raise UsageError(
                f"cannot open the log file {file} ({exc.strerror or exc})", f"无法打开日志文件{file}"
            ) from None
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    handler.sscard_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def custom_logging() -> bool:
    """Whether :func:`configure_logging` installed JSON or a file (then uvicorn's loggers join it)."""
    return any(_ours(h) for h in logging.getLogger().handlers)


__all__ = [
    "DEFAULT_BACKUPS",
    "DEFAULT_MAX_BYTES",
    "JSON_KEYS",
    "LOG_FORMATS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "configure_logging",
    "current_request_id",
    "custom_logging",
    "log_context",
    "private_rotating_handler",
]
