"""The API's JSON parser: a capped body size and a capped nesting depth.

DRF's JSONParser reads the whole body from the connection (Django's DATA_UPLOAD_MAX_MEMORY_SIZE is
only checked for `request.body` and form data, not for a parser reading the stream) and hands it to
`json.loads`, whose C scanner recurses once per level: a body nested ~1,000 levels deep raised
RecursionError and answered 500, and a few hundred levels inside generation `inputs` broke
`copy.deepcopy` further on. Here a body over `MAX_JSON_BODY_BYTES` is a 413 and a document nested
deeper than `MAX_JSON_DEPTH` a 400, both in the API's error shape (core/errors.py), before any view
sees the data. The depth is measured with an explicit stack, never by recursing on hostile input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]  # DRF has it; its stubs do not
from rest_framework.utils import json as drf_json

from core.errors import InvalidRequest

# Deep enough for any document the API takes (generation inputs are flat objects; the deepest request
# body, a collection reorder or bulk action, is three levels), far from Python's recursion limit.
MAX_JSON_DEPTH = 32
# Generation inputs arrive by the API, the web form and the CLI; the deepest a catalog model takes is
# a chat's messages with content parts (four levels). validate_inputs() copies them with deepcopy.
MAX_INPUTS_DEPTH = 16


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The request body is too large."


class NestingTooDeep(exceptions.ParseError):
    default_code = "too_deep"


def max_json_body_bytes() -> int:
    # The same cap Django applies to form bodies, so one setting bounds every non-file body.
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether lists and objects nest deeper than `limit` levels in `value` (a scalar is depth 0)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def json_depth_check(value: Any, *, what: str = "The JSON document", limit: int = MAX_JSON_DEPTH) -> None:
    """Raise a 400 (`too_deep`) when `value` nests deeper than `limit`."""
    if json_depth_exceeds(value, limit):
        raise NestingTooDeep(f"{what} nests deeper than {limit} levels.")


def json_depth_refuse(value: Any, *, field: str, limit: int) -> None:
    """For services: an InvalidRequest naming `field` when `value` nests deeper than `limit`."""
    if json_depth_exceeds(value, limit):
        raise InvalidRequest(f"{field} nests deeper than {limit} levels.", code="too_deep",
                             fields={field: [f"Nested deeper than {limit} levels."]})


class StudioJSONParser(JSONParser):
    """JSONParser with the body size and nesting depth capped (module docstring)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        encoding = get_encoding(parser_context or {})  # text codecs only (no bz2_codec bombs)
        limit = max_json_body_bytes()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            size = f"{limit / (1024 * 1024):g} MB" if limit >= 1024 * 1024 else f"{limit:,} bytes"
            raise PayloadTooLarge(f"The request body is larger than {size}, the most the API accepts.")
        try:
            text = raw.decode(encoding)
            parse_constant = drf_json.strict_constant if self.strict else None
            data = drf_json.loads(text, parse_constant=parse_constant)
        except RecursionError:
            # json's C scanner gives up past the interpreter's recursion limit; it unwinds cleanly.
            raise NestingTooDeep(f"The JSON document nests deeper than {MAX_JSON_DEPTH} levels.") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        json_depth_check(data)
        return data

