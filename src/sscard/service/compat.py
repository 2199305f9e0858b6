"""The vendor-bridge WebSocket: the function-call messages front-desk pages already send.

Pages written for vendor bridges send ``{"function": "iReadCardBas", "iType": 3}`` and expect the
national interface's numeric return code and output string (docs/card-reference.md §6).  This module maps
those messages onto the terminal, one card operation at a time like every other request:

    {"function": "iReadCardBas", "iType": 3}
        → {"function": "iReadCardBas", "code": 0, "output": "区号|社会保障号码|…|"}
    {"function": "iVerifyPIN", "iType": 1, "pin": "123456"}
        → {"function": "iVerifyPIN", "code": -51, "output": "", "tries_left": 2}
    {"function": "iChangePIN", "old": "…", "new": "…"}
    {"function": "iReadCardBas_HSM_Step1"}            → output: the step-1 line
    {"function": "iReadCardBas_HSM_Step2", "step1": "…", "answer": "内认证结果|外认证密文|"}

PINs are read from the message and never echoed, logged or kept.  ``iType`` is accepted for
compatibility; the reader choice comes from the service's configuration (``[reader] itype``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sscard.errors import SscardError
from sscard.national import DEFAULT_RETURN_CODE, ireadcardbas, return_code

if TYPE_CHECKING:
    from sscard.service.state import Service

FUNCTIONS = ("iReadCardBas", "iVerifyPIN", "iChangePIN", "iReadCardBas_HSM_Step1", "iReadCardBas_HSM_Step2")


def _str(message: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = message.get(key)
        if isinstance(value, str):
            return value
    return ""


async def call(service: Service, text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, a number past int()'s digit limit, too deep
        return {"function": None, "code": DEFAULT_RETURN_CODE, "output": "", "message": "not JSON"}
    if not isinstance(message, dict) or message.get("function") not in FUNCTIONS:
        name = message.get("function") if isinstance(message, dict) else None
        name = name[:64] if isinstance(name, str) else None  # echo a name, never an arbitrary value
        return {"function": name, "code": DEFAULT_RETURN_CODE, "output": "", "message": "unknown function"}
    function = str(message["function"])
    terminal, config = service.terminal, service.config
    try:
        if function == "iReadCardBas":
            card = await service.run(lambda: terminal.read("ssc"))  # the SSC's call: no other application
            output = ireadcardbas(card, config.terminal_id, config.device_id)
            return {"function": function, "code": 0, "output": output}
        if function == "iVerifyPIN":
            pin = _str(message, "pin", "pPin")
            outcome = await service.run(lambda: terminal.verify(pin))
            error = _outcome_error(outcome)
            return {
                "function": function,
                "code": return_code(error),
                "output": "",
                "tries_left": outcome.tries_left,
            }
        if function == "iChangePIN":
            old, new = _str(message, "old", "pOldPin"), _str(message, "new", "pNewPin")
            outcome = await service.run(lambda: terminal.change_pin(old, new))
            error = _outcome_error(outcome)
            return {"function": function, "code": return_code(error), "output": "", "tries_left": outcome.tries_left}
        if function == "iReadCardBas_HSM_Step1":
            step1 = await service.run(terminal.hsm_step1)
            return {"function": function, "code": 0, "output": step1.line()}
        step1_line, answer = _str(message, "step1", "pInInfo"), _str(message, "answer", "pHsmInfo")
        card = await service.run(lambda: terminal.hsm_step2(step1_line, answer))
        return {"function": function, "code": 0, "output": ireadcardbas(card, config.terminal_id, config.device_id)}
    except SscardError as exc:
        return {"function": function, "code": return_code(exc), "output": "", "message": exc.message_zh}


def _outcome_error(outcome: Any) -> SscardError | None:
    try:
        outcome.raise_for_error()
    except SscardError as exc:
        return exc
    return None
