"""The service's OpenAPI document, built here and checked in as docs/openapi.json (a test keeps the two equal)."""

from __future__ import annotations

from typing import Any

from sscard import __version__
from sscard.medical import FIELDS as MEDICAL_FIELDS
from sscard.service.bodies import FIELDS, Choice
from sscard.service.problems import DEFAULT_STATUS, HTTP_STATUS

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(path: str, *required: str) -> dict[str, Any]:
    """The request-body schema of ``path``, from the fields the service checks (bodies.FIELDS)."""

    types: dict[type, dict[str, Any]] = {bool: {"type": "boolean"}, str: {"type": "string"}, float: {"type": "number"}}

    def field(kind: type | Choice) -> dict[str, Any]:
        return {"type": "string", "enum": list(kind)} if isinstance(kind, Choice) else types[kind]

    schema: dict[str, Any] = {
        "type": "object",
        "properties": {key: field(kind) for key, kind in FIELDS[path].items()},
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _op(summary: str, ok: dict[str, Any], body: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": _json(ok, "success"),
            "4XX": _json(_ERROR, "a typed error: stable code, English and Chinese message (statuses: docs/service.md)"),
            "5XX": _json(_ERROR, "service or PC/SC trouble"),
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return operation


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


STRING: dict[str, Any] = {"type": "string"}
NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}


def document() -> dict[str, Any]:
    card = _obj(
        identification_code=NULLABLE_STRING,
        type=NULLABLE_STRING,
        spec_version=NULLABLE_STRING,
        issuer_id=NULLABLE_STRING,
        issue_date=NULLABLE_STRING,
        expiry_date=NULLABLE_STRING,
        card_number=NULLABLE_STRING,
        region_code=NULLABLE_STRING,
        atr=STRING,
    )
    holder = _obj(
        ssn=NULLABLE_STRING,
        name=NULLABLE_STRING,
        gender_code=NULLABLE_STRING,
        gender=NULLABLE_STRING,
        nation_code=NULLABLE_STRING,
        nation=NULLABLE_STRING,
        birthplace_code=NULLABLE_STRING,
        birth_date=NULLABLE_STRING,
    )
    session = {"$ref": "#/components/schemas/Session"}
    session_or_null = {"anyOf": [session, {"type": "null"}]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sscard local kiosk service",
            "version": __version__,
            "description": (
                "Local service for kiosk pages (docs/service.md). Browser requests must come from an allowed "
                "Origin; other clients may need a bearer token. PINs only in request bodies."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8765"}],
        "paths": {
            "/v1/status": {
                "get": _op(
                    "service, reader and session state",
                    _obj(
                        service=STRING,
                        version=STRING,
                        reader=STRING,
                        card_present={"type": ["boolean", "null"]},
                        session=session_or_null,
                    ),
                )
            },
            "/v1/readers": {"get": _op("PC/SC readers with slot kinds", _obj(readers={"type": "array"}))},
            "/v1/read": {
                "post": _op(
                    "read the card application the card carries (or `app`): exactly the `sscard read --json` contract",
                    {
                        "oneOf": [
                            {"$ref": "#/components/schemas/CardRead"},
                            {"$ref": "#/components/schemas/BankCard"},
                            {"$ref": "#/components/schemas/HealthCard"},
                        ],
                        "discriminator": {"propertyName": "kind"},
                    },
                    _body("/v1/read"),
                )
            },
            "/v1/photo": {
                "get": {
                    "summary": "the cardholder's photo (EF08), image/jpeg; ?format=json for base64",
                    "responses": {
                        "200": {"description": "the photo", "content": {"image/jpeg": {}}},
                        "4XX": _json(_ERROR, "a typed error"),
                    },
                }
            },
            "/v1/verify": {
                "post": _op(
                    "verify the PIN once (never retried)",
                    {"$ref": "#/components/schemas/PinOutcome"},
                    _body("/v1/verify", "pin"),
                )
            },
            "/v1/pin-status": {
                "post": _op("tries left without spending one", {"$ref": "#/components/schemas/PinOutcome"})
            },
            "/v1/sign-in": {
                "post": _op(
                    "sign in with the card (+PIN), a QR code or the ID card → session",
                    _obj(session=session),
                    _body("/v1/sign-in"),
                )
            },
            "/v1/sign-out": {"post": _op("end the session (resets the card)", _obj(session=session))},
            "/v1/session": {"get": _op("the current session", _obj(session=session_or_null))},
            "/v1/token/verify": {
                "post": _op(
                    "verify a session token with the configured public key",
                    _obj(session={"type": "object"}),
                    _body("/v1/token/verify", "token"),
                )
            },
            "/v1/pin-entry": {
                "post": {
                    "summary": "answer a pin_requested event (a national-interface PIN call): pin, old/new or cancel",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _body("/v1/pin-entry", "request")}},
                    },
                    "responses": {
                        "204": {"description": "delivered to the waiting call"},
                        "4XX": _json(_ERROR, "404 NOT_FOUND: no such request is waiting; 400: a bad body"),
                    },
                }
            },
            "/v1/medical/credential": {
                "post": _op(
                    "hospital front desks: wait for an SSC, ID card or e-voucher QR code (first wins); the medical "
                    "insurance platform's person-query fields (docs/medical.md). `timeout`: seconds to wait "
                    "(default 30, at most 300); `pin`: the SSC's PIN when [medical] card_passtype is 1",
                    {"$ref": "#/components/schemas/MedicalCredential"},
                    _body("/v1/medical/credential"),
                )
            },
            "/v1/events": {
                "get": {
                    "summary": "WebSocket: one JSON message per event (card, reader, service, scan, session)",
                    "responses": {"101": {"description": "switching to WebSocket"}},
                }
            },
            "/v1/compat": {
                "get": {
                    "summary": 'WebSocket: vendor-bridge function calls ({"function": "iReadCardBas", "iType": 3})',
                    "responses": {"101": {"description": "switching to WebSocket"}},
                }
            },
            **_health_paths(),
        },
        "components": {
            "schemas": {
                "Error": {
                    **_obj(error=_obj(code=STRING, message=STRING, message_zh=STRING)),
                    "x-sscard-http-status": _statuses(),
                },
                "CardRead": {
                    "type": "object",
                    "required": ["kind", "card", "cardholder", "warnings"],
                    "properties": {
                        "kind": {"const": "ssc"},
                        "card": card,
                        "cardholder": holder,
                        "warnings": {"type": "array"},
                    },
                },
                "BankCard": {
                    "type": "object",
                    "description": "the bank application (kind bank); the PAN masked: first 6, last 4 digits",
                    "required": ["kind", "aid", "pan"],
                    "properties": {
                        "kind": {"const": "bank"},
                        "aid": STRING,
                        "selected_by": {"enum": ["ppse", "aid"]},
                        "label": NULLABLE_STRING,
                        "preferred_name": NULLABLE_STRING,
                        "pan": STRING,
                        "pan_sequence": NULLABLE_STRING,
                        "expiry": NULLABLE_STRING,
                        "cardholder_name": NULLABLE_STRING,
                        "aip": STRING,
                    },
                },
                "HealthCard": {
                    "type": "object",
                    "description": (
                        "the resident health card (kind health); card_number is the resident's ID number; "
                        "cardholder null (with an AUTH_REQUIRED warning) without a key service"
                    ),
                    "required": ["kind", "card", "cardholder", "warnings"],
                    "properties": {
                        "kind": {"const": "health"},
                        "card": _obj(
                            card_type=NULLABLE_STRING,
                            version=NULLABLE_STRING,
                            issuer_name=NULLABLE_STRING,
                            issue_date=NULLABLE_STRING,
                            card_number=NULLABLE_STRING,
                            city_code=NULLABLE_STRING,
                            atr=STRING,
                        ),
                        "cardholder": {
                            "anyOf": [
                                _obj(
                                    name=NULLABLE_STRING,
                                    gender_code=NULLABLE_STRING,
                                    gender=NULLABLE_STRING,
                                    nation_code=NULLABLE_STRING,
                                    nation=NULLABLE_STRING,
                                    birth_date=NULLABLE_STRING,
                                ),
                                {"type": "null"},
                            ]
                        },
                        "warnings": {"type": "array"},
                        "authenticated_by": STRING,
                    },
                },
                "MedicalCredential": {
                    "type": "object",
                    "description": (
                        "the platform's six fields, all strings (empty when the credential has none); resolved "
                        "false: an e-voucher not resolved (no [medical] ec_url), mdtrt_cert_no is the raw code"
                    ),
                    "required": [*MEDICAL_FIELDS, "resolved", "kind", "also_presented"],
                    "properties": {
                        **dict.fromkeys(MEDICAL_FIELDS, STRING),
                        "mdtrt_cert_type": {"enum": ["01", "02", "03"]},
                        "resolved": {"type": "boolean"},
                        "kind": {"enum": ["ssc_card", "id_card", "qr"]},
                        "also_presented": {
                            "type": "array",
                            "description": "the other credentials presented at the same time, which lost the race",
                            "items": {"enum": ["ssc_card", "id_card", "qr"]},
                        },
                    },
                    "additionalProperties": False,
                },
                "PinOutcome": _obj(state=STRING, tries_left={"type": ["integer", "null"]}),
                "Session": _obj(
                    id=STRING,
                    ssn=STRING,
                    name=STRING,
                    card_number=STRING,
                    card_id=STRING,
                    method=STRING,
                    terminal_id=STRING,
                    reader=STRING,
                    started=STRING,
                    expires=STRING,
                    authenticated_by=NULLABLE_STRING,
                    token=NULLABLE_STRING,
                    credential={"type": ["object", "null"]},
                ),
            }
        },
    }


def _statuses() -> dict[str, Any]:
    """The HTTP status of each error code (the one error table's column), and of every other code."""
    return {"codes": dict(sorted(HTTP_STATUS.items())), "default": DEFAULT_STATUS}


def _health_paths() -> dict[str, Any]:
    """``/healthz``, ``/readyz``, ``/metrics`` (sscard.service.ready; docs/service.md "Health and metrics")."""
    check = {"type": "object", "properties": {"ok": {"type": "boolean"}, "code": STRING}, "required": ["ok"]}
    checks = {name: check for name in ("pcscd", "reader", "serial", "operations")}
    ready = _obj(status={"enum": ["ready", "not_ready"]}, checks=_obj(**checks))
    return {
        "/healthz": {"get": _op("liveness: the process answers", _obj(status=STRING, service=STRING, version=STRING))},
        "/readyz": {
            "get": {
                "summary": "readiness: pcscd, the reader, the serial devices, no card operation stuck; 200 or 503",
                "responses": {"200": _json(ready, "ready"), "503": _json(ready, "not ready: the failed checks' codes")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text format (sscard_* metrics, docs/service.md)",
                "responses": {"200": {"description": "the metrics", "content": {"text/plain": {}}}},
            }
        },
    }
