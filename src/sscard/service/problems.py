"""The service's own errors and the JSON error form of every error (docs/service.md, "Errors").

The HTTP statuses are a column of the one error table (:data:`sscard.errors.ERROR_TABLE`), beside
the CLI's exit codes and the national return codes; docs/service.md's table is held to it by
tests/test_service_hardening.py.  A neutral module of the service: the guard, the body checks, the
routes and the HTTP protocols all answer through :func:`error_response`, and it imports none of them.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from sscard.errors import DEFAULT_HTTP_STATUS, ERROR_TABLE, SscardError
from sscard.errors import http_status as _table_status


class ServiceError(SscardError):
    """Errors of the service itself (not of the card): refused origin, busy, too large, bad request.

    Their HTTP statuses are rows of the one error table (:data:`sscard.errors.ERROR_TABLE`) with
    everyone else's, which the tests hold docs/service.md to.
    """

    code = "SERVICE_ERROR"


class OriginRefused(ServiceError):
    code = "ORIGIN_REFUSED"
    message_en = "Requests from this web page are not allowed."
    message_zh_text = "不允许来自该网页的请求。"


class Unauthorized(ServiceError):
    code = "UNAUTHORIZED"
    message_en = "A valid bearer token is required."
    message_zh_text = "需要有效的访问令牌。"


class ServiceBusy(ServiceError):
    code = "SERVICE_BUSY"
    message_en = "The card reader is busy with another request. Please try again."
    message_zh_text = "读卡器正忙，请稍后重试。"
    retriable = True


class RequestTooLarge(ServiceError):
    code = "REQUEST_TOO_LARGE"
    message_en = "The request is too large."
    message_zh_text = "请求数据过大。"


class BadRequest(ServiceError):
    """A body that is not a JSON object of the documented fields and types.

    ``problem`` (English) is in the answer's ``problem`` field and message; ``problem_zh`` is its
    Chinese counterpart, so that ``message_zh`` stays wholly Chinese.
    """

    code = "BAD_REQUEST"
    message_en = "The request is not valid: {problem}."
    message_zh_text = "请求无效。"

    def __init__(self, problem: str, problem_zh: str = "") -> None:
        super().__init__(None, problem=problem)
        self.problem_zh = problem_zh

    @property
    def message_zh(self) -> str:
        return f"请求无效：{self.problem_zh}。" if self.problem_zh else self.message_zh_text


class NotFound(ServiceError):
    code = "NOT_FOUND"
    message_en = "There is no such endpoint."
    message_zh_text = "没有这个接口。"


class PinRequestNotFound(NotFound):
    """``POST /v1/pin-entry`` for a request that is not waiting (unknown, answered, timed out)."""

    message_en = "No such PIN request is waiting (unknown, already answered or timed out)."
    message_zh_text = "没有等待中的该密码输入请求（未知、已答复或已超时）。"


class MethodNotAllowed(ServiceError):
    code = "METHOD_NOT_ALLOWED"
    message_en = "This endpoint does not take this request method."
    message_zh_text = "该接口不支持此请求方法。"


class InternalError(ServiceError):
    code = "INTERNAL"
    message_en = "Internal error in the service (a bug: see the service's log)."
    message_zh_text = "服务内部错误，请查看服务日志。"


class ClientGone(Exception):
    """The client closed the connection before its request body ended: nobody to answer."""


#: HTTP status per error code, as the one error table lists them (docs/service.md's "Errors" table
#: is checked against it by tests/test_service_hardening.py).  Every code not listed is 409: the
#: card or the session said no.
HTTP_STATUS: dict[str, int] = {
    code: row.http_status for code, row in ERROR_TABLE.items() if row.http_status is not None
}
#: The status of every code :data:`HTTP_STATUS` does not list.
DEFAULT_STATUS = DEFAULT_HTTP_STATUS


def http_status(code: str) -> int:
    """The HTTP status an error with this code is answered with."""
    return _table_status(code)


#: Answers carry personal data: no browser or proxy cache may keep them.
NO_STORE = {"Cache-Control": "no-store"}


def error_response(exc: SscardError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, status_code=http_status(exc.code), headers=NO_STORE)
