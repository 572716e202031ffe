"""google-genai's errors as ProviderErrors: 429s (with Gemini's RetryInfo delay), 5xx, timeouts and
transport trouble retryable; bad keys, policy refusals and bad input final, with Google's own message."""

from __future__ import annotations

import re
from typing import Any

import httpx
from google.genai import errors as genai_errors

from generations.providers.base import ProviderError

try:  # httpx2 is optional for google-genai; 3.4.0 uses it when it is installed
    import httpx2
    TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, httpx2.TransportError)
    TIMEOUTS: tuple[type[BaseException], ...] = (httpx.TimeoutException, httpx2.TimeoutException)
except ImportError:
    TRANSPORT_ERRORS, TIMEOUTS = (httpx.TransportError,), (httpx.TimeoutException,)

# google.rpc.Code values for a failed long-running operation that a fresh attempt can get past:
# DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE.
RETRYABLE_RPC_CODES = {4, 8, 10, 13, 14}
# Vertex reports prompts refused by its Responsible AI filters as plain 400s / operation errors whose
# message says so (e.g. "...violate Google's Responsible AI practices..."); there is no separate code.
POLICY_MESSAGE = re.compile(r"responsible ai|usage guidelines|safety (?:filter|polic)", re.I)


def _error_details(exc: Any) -> list[dict[str, Any]]:
    body = exc.details if isinstance(getattr(exc, "details", None), dict) else {}
    details = (body.get("error") or {}).get("details") or []
    return [d for d in details if isinstance(d, dict)]


def _retry_after(exc: Any) -> float | None:
    # Gemini's 429s carry google.rpc.RetryInfo {"retryDelay": "39s"} in the error details
    # (https://ai.google.dev/gemini-api/docs/troubleshooting); honour a Retry-After header too.
    for detail in _error_details(exc):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"\s*([0-9.]+)s\s*", str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_bad_key(exc: Any) -> bool:
    # A bad Gemini key is a 400 INVALID_ARGUMENT "API key not valid" with ErrorInfo reason
    # API_KEY_INVALID, not a 401; a key without access to the API is a 403 PERMISSION_DENIED.
    if exc.code in (401, 403):
        return True
    reasons = {str(d.get("reason", "")) for d in _error_details(exc)}
    return bool(reasons & {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED"}) or "api key not valid" in (
        exc.message or "").lower()


def from_sdk_error(exc: Exception) -> ProviderError:
    """One SDK exception as a ProviderError: 429/5xx/timeouts/connection trouble retryable, the rest final
    with Google's own message (users see it)."""
    if isinstance(exc, genai_errors.APIError):
        message = exc.message or str(exc)
        text = f"Google: {message}"
        if exc.code == 429:
            return ProviderError(text, code="rate_limited", retryable=True, retry_after=_retry_after(exc))
        if exc.code in (408,) or exc.code >= 500:
            return ProviderError(text, code="provider_unavailable", retryable=True, retry_after=_retry_after(exc))
        if _is_bad_key(exc):
            return ProviderError(text, code="invalid_key", retryable=False)
        if POLICY_MESSAGE.search(message):
            return ProviderError(text, code="content_policy", retryable=False)
        if exc.code == 404:
            return ProviderError(text, code="unknown_model", retryable=False)
        return ProviderError(text, code="invalid_input", retryable=False)
    if isinstance(exc, TIMEOUTS):
        return ProviderError("Google did not answer in time.", code="timeout", retryable=True)
    if isinstance(exc, TRANSPORT_ERRORS):
        return ProviderError(f"Could not reach Google: {exc}", code="connection_error", retryable=True)
    if isinstance(exc, ValueError):  # the SDK refusing a parameter before sending anything
        return ProviderError(f"Google SDK refused the request: {exc}", code="invalid_input", retryable=False)
    raise exc


def sdk_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ProviderError:
        raise
    except Exception as exc:
        raise from_sdk_error(exc) from exc


def policy_error(message: str) -> ProviderError:
    return ProviderError(message, code="content_policy", retryable=False)
