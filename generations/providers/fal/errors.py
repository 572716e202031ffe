"""fal's errors as ProviderErrors: which are transient (retried by the runner) and which are final, with
fal's own `detail` turned into a sentence users can read."""

from __future__ import annotations

from typing import Any

import fal_client
import httpx

from generations.providers.base import ProviderError
from generations.providers.http import header, retry_after_seconds


def detail_message(detail: Any) -> str:
    """fal's `detail`: a string (request errors) or a list of {loc, msg, type} (model errors,
    https://docs.fal.ai/errors), turned into one readable sentence."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        detail = [detail]
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if not isinstance(item, dict):
                parts.append(str(item))
                continue
            msg = str(item.get("msg") or item.get("message") or item.get("type") or "invalid input")
            loc = [str(p) for p in item.get("loc") or [] if p != "body"]
            parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        return "; ".join(parts)
    return str(detail) if detail is not None else ""


def _detail_types(detail: Any) -> list[str]:
    items = detail if isinstance(detail, list) else [detail] if isinstance(detail, dict) else []
    return [str(item.get("type")) for item in items if isinstance(item, dict) and item.get("type")]


def error_from_http(exc: fal_client.FalClientHTTPError) -> ProviderError:
    """Map an SDK HTTP error to ours (§1.5): 429, 408 and 5xx are transient, the rest final;
    fal's optional `X-Fal-Retryable` header wins when present (https://docs.fal.ai/errors)."""
    status = exc.status_code
    headers = exc.response_headers or {}
    message = detail_message(exc.message) or f"fal.ai answered HTTP {status}."
    types = _detail_types(exc.message)
    error_type = exc.error_type or (types[0] if types else "")
    if status in (401, 403):
        return ProviderError(f"fal.ai rejected the API key: {message}", code="invalid_key")
    if status == 429:
        return ProviderError(message, code="rate_limited", retryable=True,
                             retry_after=retry_after_seconds(httpx.Headers(headers)))
    if "content_policy_violation" in types or error_type == "content_policy_violation":
        return ProviderError(message, code="content_policy")
    if status == 408 or status >= 500:
        code, retryable = ("timeout" if status in (408, 504) else "provider_unavailable"), True
    elif status == 404:
        code, retryable = "not_found", False
    else:
        code, retryable = "invalid_input", False
    flag = (header(headers, "x-fal-retryable") or "").lower()
    if flag in ("true", "false"):
        retryable = flag == "true"
    return ProviderError(message, code=code, retryable=retryable,
                         retry_after=retry_after_seconds(httpx.Headers(headers)) if retryable else None)


def error_from_exception(exc: Exception) -> ProviderError:
    if isinstance(exc, fal_client.FalClientHTTPError):
        return error_from_http(exc)
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError("fal.ai did not answer in time.", code="timeout", retryable=True)
    if isinstance(exc, httpx.TransportError):
        return ProviderError(f"Could not reach fal.ai ({type(exc).__name__}).", code="connection_error",
                             retryable=True)
    if isinstance(exc, httpx.HTTPStatusError):  # only from code paths outside _raise_for_status
        return ProviderError(f"fal.ai answered HTTP {exc.response.status_code}.",
                             code="provider_unavailable" if exc.response.status_code >= 500 else "provider_error",
                             retryable=exc.response.status_code >= 500 or exc.response.status_code == 429)
    return ProviderError(f"fal.ai sent a response this studio could not read ({type(exc).__name__}: {exc}).",
                         code="bad_response")
