"""Resolving a medical insurance e-voucher (医保电子凭证): the scanned code → the person and the
ecToken the platform's person query (1101) takes (docs/medical.md, docs/card-reference.md §7).

The code a scanner reads is opaque; only the national platform knows whose it is.  An
:class:`EcResolver` asks it.  :class:`HttpEcResolver` is the one real implementation: it sends the
``ec.query`` request as JSON over HTTPS to the configured ``EC_URL`` and decodes the answer, whose
``data`` is JSON inside a JSON string.

* **Never retried.**  The request is sent once.  A connection refused before anything was sent
  and a timeout after the request went out are both :class:`~sscard.errors.EcUnreachable`, the
  second with ``sent: true``: the platform may have processed it, so nothing here sends it again
  and the caller decides (the resident scans again, which is a new request with a new code).
* **One deadline.**  ``timeout`` bounds the whole exchange, connection to the last byte of the
  answer: every socket operation gets what is left of it, and a watchdog shuts the socket down
  when it runs out, so a platform that trickles bytes cannot hold the front desk.
* **Typed answers.**  ``code`` not 0 is :class:`~sscard.errors.EcRefused` with the platform's code
  and message; anything that is not the documented answer (not JSON, no ``code``, ``data`` that is
  not a JSON object, no ``ecToken``, over :data:`MAX_ANSWER` bytes, an HTTP status other than 200
  without a platform answer) is :class:`~sscard.errors.EcBadAnswer`.
* **Signing is a pluggable step, and none ships.**  The platform's gateway authenticates callers
  with ``ACCESS_KEY``/``SECRETKEY``; how (which headers, which digest over what) is unconfirmed
  (docs/card-reference.md §7 names the keys, not the scheme).  A :class:`Signer` gets the request
  just before it is sent and may add headers or rewrite the body; sscard ships no signer, because
  one it cannot confirm would fail against the platform in ways that look like refusals.
* **HTTPS**, with the system's certificate store (or the ``ssl_context`` given).  Plain
  ``http://`` is accepted for a loopback address (127.0.0.1, ::1, localhost: a test platform or a
  local gateway on the same machine), and for another host only when asked for explicitly
  (``allow_http=True``, ``[medical] allow_http``: a platform front-end processor (前置机) on the
  hospital's private network that speaks plain HTTP).

Standard library only (``http.client``, ``ssl``, ``json``): one POST per e-voucher needs no HTTP
library, and this module is imported only when an e-voucher is resolved, never at start-up
(docs/medical.md, "Why no HTTP library").  No log line holds the code, the token or the person:
the log says the host, the time taken and the outcome.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sscard.errors import ConfigError, EcBadAnswer, EcRefused, EcUnreachable

if TYPE_CHECKING:
    from sscard.config import Config

log = logging.getLogger("sscard.medical.ec")

#: The largest answer read (bytes): an ec.query answer is a few hundred bytes.
MAX_ANSWER = 1 << 20
#: Hosts for which plain http:// is accepted (a platform simulator, a local gateway).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@dataclass(frozen=True)
class EcPerson:
    """Who an e-voucher belongs to, as the platform's ``ec.query`` answer says (the keys of its
    ``data``, docs/card-reference.md §7).  Personal data is out of ``repr`` (PIPL)."""

    ec_token: str = field(repr=False)
    id_no: str = field(repr=False)
    id_type: str
    user_name: str = field(repr=False)
    gender: str = field(default="", repr=False)
    birthday: str = field(default="", repr=False)
    insu_org: str = ""
    ec_index_no: str = field(default="", repr=False)
    #: The decoded ``data`` object as the platform sent it (later fields included).
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


class EcResolver(Protocol):
    """What resolves a scanned e-voucher code to the person and the ecToken."""

    def resolve(self, code: str) -> EcPerson: ...


@dataclass(frozen=True)
class EcRequest:
    """One ec.query exactly as it will be sent: what a :class:`Signer` sees and may change."""

    url: str
    headers: Mapping[str, str]
    body: bytes = field(repr=False)


class Signer(Protocol):
    """The platform gateway's signing step (``ACCESS_KEY``/``SECRETKEY``): given the request just
    before it is sent, return it with the signature added (headers, or a rewritten body).  Called
    once per request; sscard ships none (the scheme is unconfirmed, docs/medical.md)."""

    def sign(self, request: EcRequest) -> EcRequest: ...


def _platform_data() -> Mapping[str, Any]:
    from sscard.medical.platform import platform_data

    return platform_data()


class HttpEcResolver:
    """``ec.query`` as JSON over HTTPS to ``url`` (the configuration's ``EC_URL``)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        org_id: str = "",
        signer: Signer | None = None,
        business_type: str | None = None,
        operator_id: str = "",
        operator_name: str = "",
        office_id: str = "",
        office_name: str = "",
        device_type: str = "",
        ssl_context: ssl.SSLContext | None = None,
        max_answer: int = MAX_ANSWER,
        allow_http: bool = False,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in ("https", "http") or not host:
            raise ConfigError(
                f"[medical] ec_url must be an https:// URL, not {url!r}",
                problem_zh="[medical] ec_url 必须是`https://`开头的地址",
                key="medical.ec_url",
            )
        if parts.scheme == "http" and host not in LOOPBACK_HOSTS and not allow_http:
            raise ConfigError(
                f"[medical] ec_url {url!r}: plain http:// is accepted only for a loopback address, "
                "or with [medical] allow_http = true",
                problem_zh=(
                    "[medical] ec_url 只有本机回环地址才可以使用`http://`，其他地址须使用`https://`或设置 allow_http"
                ),
                key="medical.ec_url",
            )
        if not timeout > 0:
            raise ValueError("timeout must be above 0 seconds")
        self.url, self.timeout, self.org_id, self.signer = url, float(timeout), org_id, signer
        self._parts = parts
        self._data_fields = {
            "orgId": org_id,
            "businessType": _platform_data()["ec_query"]["business_type"] if business_type is None else business_type,
            "operatorId": operator_id,
            "operatorName": operator_name,
            "officeId": office_id,
            "officeName": office_name,
            "deviceType": device_type,
        }
        self._ssl_context = ssl_context
        self.max_answer = max_answer

    def __repr__(self) -> str:
        return f"HttpEcResolver({self._parts.scheme}://{self._parts.netloc}, timeout={self.timeout:g})"

    # -- the request ----------------------------------------------------------------------------

    def request_body(self, code: str) -> dict[str, Any]:
        """The ec.query request for ``code`` (docs/card-reference.md §7; the code's field name is
        unconfirmed and comes from ``medical/data/platform.toml``)."""
        query = _platform_data()["ec_query"]
        data = dict(self._data_fields)
        data[query["code_field"]] = code
        return {"transType": query["trans_type"], "orgId": self.org_id, "data": data}

    def resolve(self, code: str) -> EcPerson:
        """Send one ec.query for ``code`` and decode the answer; never retried (module docstring)."""
        body = json.dumps(self.request_body(code), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        request = EcRequest(
            self.url,
            {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"},
            body,
        )
        if self.signer is not None:
            request = self.signer.sign(request)
        started = time.monotonic()
        try:
            status, answer = self._exchange(request, started + self.timeout)
            person = decode_answer(answer, status)
        except (EcUnreachable, EcRefused, EcBadAnswer) as exc:
            log.info(
                "ec.query to %s: %s after %.0f ms", self._parts.hostname, exc.code, (time.monotonic() - started) * 1000
            )
            raise
        log.info("ec.query to %s: resolved in %.0f ms", self._parts.hostname, (time.monotonic() - started) * 1000)
        return person

    # -- the exchange ---------------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        parts = urllib.parse.urlsplit(self.url)
        host, port = parts.hostname or "", parts.port
        if parts.scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _exchange(self, request: EcRequest, deadline: float) -> tuple[int, bytes]:
        """POST once; the HTTP status and the answer's bytes.  Errors: EC_UNREACHABLE (with
        ``sent``), EC_BAD_ANSWER for an answer over the size limit."""
        parts = urllib.parse.urlsplit(request.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = self._connection(max(deadline - time.monotonic(), 0.001))
        sent = False
        expired = threading.Event()

        def watchdog() -> None:
            expired.set()
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(max(deadline - time.monotonic(), 0.0), watchdog)
        timer.daemon = True
        timer.start()
        try:
            connection.connect()
            _left(connection, deadline)
            sent = True  # from here on the platform may receive (and process) the request
            connection.request("POST", target, body=request.body, headers=dict(request.headers))
            _left(connection, deadline)
            response = connection.getresponse()
            chunks: list[bytes] = []
            size = 0
            while True:
                _left(connection, deadline)
                chunk = response.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_answer:
                    raise EcBadAnswer(
                        f"answer over {self.max_answer} bytes", problem_zh=f"应答超过{self.max_answer}字节"
                    )
                chunks.append(chunk)
            return response.status, b"".join(chunks)
        except TimeoutError as exc:
            raise _timed_out(self.timeout, sent) from exc
        except ssl.SSLError as exc:
            raise EcUnreachable(
                "TLS handshake or certificate failed", str(exc), sent=sent, problem_zh="TLS 握手或证书校验失败"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise _timed_out(self.timeout, sent) from exc
            problem, problem_zh = ("connection failed", "连接失败")
            if sent:
                problem, problem_zh = ("connection lost before the answer", "应答前连接中断")
            raise EcUnreachable(problem, f"{type(exc).__name__}: {exc}", sent=sent, problem_zh=problem_zh) from exc
        finally:
            timer.cancel()
            connection.close()


def _left(connection: http.client.HTTPConnection, deadline: float) -> None:
    """Give the socket what is left of the deadline (or time out now)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    if connection.sock is not None:
        connection.sock.settimeout(remaining)


def _timed_out(timeout: float, sent: bool) -> EcUnreachable:
    return EcUnreachable(
        f"no answer within {timeout:g} s",
        sent=sent,
        problem_zh=f"{timeout:g}秒内没有应答",
    )


# -- the answer ---------------------------------------------------------------------------------


def _text(value: object) -> str:
    """A field of the answer as text: strings as they are, numbers as written, nothing as ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        raise EcBadAnswer("a field is true/false where text was expected", problem_zh="字段类型错误")
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise EcBadAnswer("a field is not text", problem_zh="字段类型错误")


def _chinese_only(text: str) -> str | None:
    """``text`` when it reads as Chinese (has CJK and no Latin word), for the Chinese message."""
    return text if _CJK.search(text) and not _LATIN_WORD.search(text) else None


def decode_answer(raw: bytes, status: int = 200) -> EcPerson:
    """The person of one ec.query answer ``{"code": 0, "message": …, "data": "<JSON text>"}``.

    ``code`` 0 (or ``"0"``) is success; any other code is :class:`~sscard.errors.EcRefused`.  ``data``
    is decoded from its JSON string (an object already decoded is accepted too) and must hold a
    non-empty ``ecToken``; ``idNo``, ``idType``, ``userName`` … are kept as text.  An HTTP status
    other than 200 is a refusal when its body is a platform answer with a code, else EC_BAD_ANSWER.
    """
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise EcBadAnswer(f"HTTP {status}, not JSON" if status != 200 else "not JSON", problem_zh="不是 JSON") from None
    if not isinstance(answer, dict) or "code" not in answer:
        raise EcBadAnswer(f"HTTP {status}, no code in the answer", problem_zh="应答中没有`code`")
    code = answer["code"]
    if isinstance(code, bool) or not isinstance(code, int | str):
        raise EcBadAnswer("code is neither a number nor text", problem_zh="`code`类型错误")
    message = answer.get("message", "")
    message = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
    if str(code).strip() not in ("0", "0000") or status != 200:
        if str(code).strip() in ("0", "0000"):
            raise EcBadAnswer(f"HTTP {status} with code 0", problem_zh=f"HTTP 状态{status}")
        raise EcRefused(str(code), message, platform_message_zh=_chinese_only(message))
    data = answer.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            raise EcBadAnswer("data is not JSON text", problem_zh="`data`不是 JSON 文本") from None
    if not isinstance(data, dict):
        raise EcBadAnswer("data is not a JSON object", problem_zh="`data`不是 JSON 对象")
    token = _text(data.get("ecToken"))
    if not token:
        raise EcBadAnswer("no ecToken in data", problem_zh="`data`中没有`ecToken`")
    person = EcPerson(
        ec_token=token,
        id_no=_text(data.get("idNo")),
        id_type=_text(data.get("idType")),
        user_name=_text(data.get("userName")),
        gender=_text(data.get("gender")),
        birthday=_text(data.get("birthday")),
        insu_org=_text(data.get("insuOrg")),
        ec_index_no=_text(data.get("ecIndexNo")),
        data=data,
    )
    if not person.id_no or not person.user_name:
        raise EcBadAnswer("data has no idNo or userName", problem_zh="`data`中缺少`idNo`或`userName`")
    return person


def resolver_from_config(
    config: Config,
    signer: Signer | None = None,
    *,
    timeout: float | None = None,
    org_id: str | None = None,
) -> HttpEcResolver | None:
    """The resolver of ``[medical]`` (``ec_url`` and the request's fields), or None when no
    ``ec_url`` is configured: e-vouchers then stay unresolved (``resolved: false``).

    ``timeout`` and ``org_id`` override ``[medical] timeout``/``org_id`` (libHeaSecReadInfo's
    ``Init`` carries its own); every other field is the service's configuration.
    """
    if not config.medical_ec_url:
        return None
    return HttpEcResolver(
        config.medical_ec_url,
        timeout=config.medical_timeout if timeout is None else timeout,
        org_id=config.medical_org_id if org_id is None else org_id,
        signer=signer,
        business_type=config.medical_business_type,
        operator_id=config.medical_operator_id,
        operator_name=config.medical_operator_name,
        office_id=config.medical_office_id,
        office_name=config.medical_office_name,
        device_type=config.medical_device_type,
        allow_http=config.medical_allow_http,
    )


__all__ = [
    "MAX_ANSWER",
    "EcPerson",
    "EcRequest",
    "EcResolver",
    "HttpEcResolver",
    "Signer",
    "decode_answer",
    "resolver_from_config",
]
