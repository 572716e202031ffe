"""HTTP details every remote adapter reads the same way: how long a provider asks us to wait, a header
looked up whatever its case, and how long one request may take."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI's, non-standard) or `retry-after` (seconds or an
    HTTP date). Stainless SDKs read the same two headers (`_base_client._parse_retry_after_header`)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header from a plain mapping (the SDKs hand some over as dicts), matched without regard to case."""
    name = name.lower()
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def client_timeout(config: dict[str, Any], default: float) -> float:
    """One request's timeout: the catalog entry's `request_timeout_seconds`, else the adapter's default."""
    return float(config.get("request_timeout_seconds") or default)


__all__ = ["client_timeout", "header", "retry_after_seconds"]
