"""Reading a JSON request body from outside, with every size bounded.

:func:`read_json_body` is how the HTTP API (and any endpoint mounted beside it)
turns a request body into a Python value. Guarantees:

* **The size limit holds while streaming.** A ``Content-Length`` over the limit
  is refused before a byte is read; a chunked body is counted as it arrives and
  refused at the first chunk that crosses the limit, so a 400 MiB upload costs
  the server at most ``limit`` bytes of memory, never the upload's size.
* **Nesting is bounded.** A body nested deeper than ``max_depth`` is refused
  (a 32k-deep ``[[[...`` would otherwise exhaust the recursion limit of the JSON
  parser or of validation), as is anything the parser cannot take
  (:class:`RecursionError` included).
* **Only JSON.** ``NaN``/``Infinity``, numbers that overflow a float, integers of
  more than 4300 digits and strings holding lone surrogates (text no UTF-8
  encoder can write back) are refused, naming the dotted path of the value.

Every refusal is a :class:`BodyProblem`: an HTTP status, a stable error code,
a message that names what is wrong, and ``field`` (``"body"`` for the body as a
whole, else the dotted path). Nothing here raises for bad input.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import ClientDisconnect, Request

__all__ = ["MAX_BODY", "MAX_DEPTH", "BodyProblem", "read_json_body"]

MAX_BODY: Final = 64 * 1024
"""Bytes a revocation request may take; the largest valid one is under 4 KiB."""

MAX_DEPTH: Final = 32
"""Levels of nested arrays/objects a body may have; requests need 3."""


@dataclass(frozen=True, slots=True)
class BodyProblem:
    """Why a body was refused: answer with ``status`` and these fields."""

    status: int
    error: str
    message: str
    field: str = "body"


class _NotJson(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"the number {text[:40]} does not fit a 64-bit float")
    return value


def _constant(name: str) -> float:
    raise _NotJson(f"{name} is not JSON")


def _path(parts: list[str | int]) -> str:
    return ".".join(str(p) for p in parts) or "body"


def _check_tree(value: Any, max_depth: int) -> BodyProblem | None:
    """Depth and text checks, iteratively (a recursive walk is what we guard against)."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if len(path) > max_depth:
            return BodyProblem(
                400,
                "bad_request",
                f"{_path(path[:max_depth])}: the body is nested deeper than {max_depth} levels",
            )
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                where = _path(path)
                return BodyProblem(
                    422,
                    "invalid_request",
                    f"{where}: holds a lone surrogate escape, which is not text",
                    field=where,
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                try:
                    key.encode("utf-8")
                except UnicodeEncodeError:
                    return BodyProblem(
                        422, "invalid_request", f"{_path(path)}: a key holds a lone surrogate"
                    )
                stack.append((child, [*path, key]))
        elif isinstance(item, list):
            stack.extend((child, [*path, i]) for i, child in enumerate(item))
    return None


async def read_json_body(
    request: Request, *, limit: int = MAX_BODY, max_depth: int = MAX_DEPTH
) -> Any:
    """The parsed JSON body, or a :class:`BodyProblem` saying why not (see module doc)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit() or len(declared) > 19:
            return BodyProblem(400, "bad_request", "Content-Length is not a byte count")
        if int(declared) > limit:
            return BodyProblem(
                413, "body_too_large", f"the body is larger than {limit} bytes; nothing was read"
            )
    received = bytearray()
    try:
        async for chunk in request.stream():
            if len(received) + len(chunk) > limit:
                return BodyProblem(413, "body_too_large", f"the body is larger than {limit} bytes")
            received += chunk
    except ClientDisconnect:
        return BodyProblem(400, "bad_request", "the client went away before the body ended")
    if not received.strip():
        return BodyProblem(400, "bad_request", "the body is empty: a JSON object is expected")
    try:
        value = json.loads(received, parse_float=_finite, parse_constant=_constant)
    except RecursionError:
        return BodyProblem(400, "bad_request", f"the body is nested deeper than {max_depth} levels")
    except _NotJson as exc:
        return BodyProblem(400, "bad_request", f"the body is not JSON: {exc}")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        return BodyProblem(400, "bad_request", f"the body is not JSON: {str(exc)[:200]}")
    return _check_tree(value, max_depth) or value
