"""Domain errors and the API's error shape.

Services raise `ServiceError` subclasses; the API turns them into JSON, the web app into messages and
form errors, the CLI into a line on stderr. Every API error looks like
`{"error": {"code": "...", "message": "...", "fields": {...}}}` with `fields` only for bad input.
Messages that quote the input ("'…' is too long", "\"…\" is not a valid choice") are cut to
`MESSAGE_MAX_CHARS`, so a 4 MB prompt is not sent back in its own error. A body over the size limit
(Django's RequestDataTooBig and friends, or core.parsers.PayloadTooLarge) is a 413 in this shape.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response


class ServiceError(Exception):
    code = "error"
    http_status: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, code: str | None = None, fields: dict[str, list[str]] | None = None,
                 extra: dict[str, Any] | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if http_status:
            self.http_status = http_status
        self.fields = fields or {}
        self.extra = extra or {}


class InvalidRequest(ServiceError):
    code = "invalid"


class Conflict(ServiceError):
    code = "conflict"
    http_status = status.HTTP_409_CONFLICT


MESSAGE_MAX_CHARS = 300


def _clip(value: Any) -> Any:
    """Error messages with any long quoted input cut short; the structure of `fields` is kept."""
    if isinstance(value, str):
        return value if len(value) <= MESSAGE_MAX_CHARS else value[: MESSAGE_MAX_CHARS - 1] + "…"
    if isinstance(value, dict):
        return {_clip(key): _clip(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clip(item) for item in value]
    return value


def _payload(code: str, message: str, fields: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": _clip(message)}
    if fields:
        body["fields"] = _clip(fields)
    body.update(extra)
    return {"error": body}


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            text = _first_message(value)
            return text if key in ("non_field_errors", "detail") else f"{key}: {text}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # rest_framework.views reads the throttle settings at import, and the throttle (billing.limits)
    # raises errors defined in this module: a cycle through DRF if this import were at the top.
    from rest_framework.views import exception_handler  # see the comment above: a cycle through DRF

    if isinstance(exc, ServiceError):  # every domain refusal: InsufficientCredits (402), RefusedFile, …
        refused = Response(_payload(exc.code, exc.message, exc.fields, **exc.extra), status=exc.http_status)
        retry_after = getattr(exc, "retry_after", None)  # billing.limits.RateLimited raised by a service
        if retry_after:
            refused["Retry-After"] = str(retry_after)
        return refused
    if isinstance(exc, RequestDataTooBig):
        return Response(_payload("too_large", "The request body is too large."),
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return Response(_payload("too_large", str(exc)), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = _payload("invalid", _first_message(exc.detail), fields)
    else:
        code = getattr(exc, "default_code", "error")
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        response.data = _payload(str(getattr(detail, "code", code) or code), _first_message(detail))
    return response
