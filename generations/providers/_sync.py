"""Running a provider's synchronous request/response API behind our submit/poll/cancel contract.

OpenAI, Anthropic and OpenRouter answer each request in the same HTTP exchange (an image can take a
minute or more). `submit` starts that call on a daemon thread and returns at once; `poll` reports
"running" until the call has returned, then the stored result exactly once. Doing the call inside
`submit` instead would be simpler but would block the runner for the whole call: no heartbeat (the
sweep re-queues a job whose heartbeat is older than STALE_RUNNING_AFTER), no cancel check and no
timeout until the provider answers.

The registry lives only as long as the worker process (like the local provider's). A poll for an id
it does not know means the worker restarted mid-call: it reports the documented "lost" status and the
runner submits afresh. The first call's result is gone either way; a synchronous API has no request
id to fetch it by later.

Cancel can only stop waiting. There is no cancel endpoint for a synchronous call and the request
already sent keeps running upstream, so the provider still bills it; the studio charges the user
nothing for a canceled job, so that cost is the platform's.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

from generations.providers.base import ProviderError, ProviderStatus

logger = logging.getLogger(__name__)

# A finished call nobody polled (the runner died or gave up) is dropped after this long.
FINISHED_CALL_TTL_SECONDS = 600.0
LOST_MESSAGE = "The call to the provider was not running in this worker; it will be sent again."

Call = Callable[[], ProviderStatus]
"""Does the provider call and returns the succeeded status (outputs, usage, cost) or raises
ProviderError. Runs on the call's own thread."""


@dataclass
class _Call:
    request_id: str
    provider: str
    description: str
    started_at: float = field(default_factory=time.monotonic)
    announced: bool = False
    canceled: bool = False
    result: ProviderStatus | None = None
    finished_at: float | None = None


class SyncCallRegistry:
    """One per adapter: the calls this worker process has in flight, keyed by our own request id."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._calls: dict[str, _Call] = {}
        self._lock = threading.Lock()

    def start(self, call: Call, *, description: str) -> str:
        record = _Call(request_id=f"{self.provider}-{uuid.uuid4().hex}", provider=self.provider,
                       description=description)
        with self._lock:
            self._forget_stale(time.monotonic())
            self._calls[record.request_id] = record
        thread = threading.Thread(target=self._run, args=(record, call), daemon=True,
                                  name=f"{self.provider}-{record.request_id[-8:]}")
        thread.start()
        return record.request_id

    def poll(self, request_id: str) -> ProviderStatus:
        with self._lock:
            record = self._calls.get(request_id)
            if record is None:
                return ProviderStatus(state="failed", error_code="lost", error_message=LOST_MESSAGE,
                                      retryable=True)
            logs: list[str] = []
            if not record.announced:
                record.announced = True
                logs.append(f"Sent to {record.description}; waiting for the response "
                            "(this API answers in one piece and reports no progress).")
            if record.canceled:
                del self._calls[request_id]
                return ProviderStatus(state="canceled", logs=logs)
            if record.result is None:
                return ProviderStatus(state="running", logs=logs)
            del self._calls[request_id]
            result = record.result
            result.logs = logs + result.logs
            return result

    def cancel(self, request_id: str) -> bool:
        with self._lock:
            record = self._calls.get(request_id)
            if record is None or record.result is not None or record.canceled:
                return False
            record.canceled = True
            return True

    def in_flight(self) -> int:
        with self._lock:
            return len(self._calls)

    def _run(self, record: _Call, call: Call) -> None:
        try:
            result = call()
        except ProviderError as exc:
            result = ProviderStatus(state="failed", error_code=exc.code, error_message=exc.message,
                                    retryable=exc.retryable)
            if exc.retry_after:
                # The runner reads a failed status's Retry-After from usage (services._requeue).
                result.usage["retry_after"] = exc.retry_after
        except Exception as exc:  # the thread must always leave a result behind for poll
            logger.exception("%s call %s crashed", self.provider, record.request_id)
            result = ProviderStatus(state="failed", error_code="provider_error", retryable=False,
                                    error_message=f"The {self.provider} call failed: {type(exc).__name__}: {exc}")
        elapsed = time.monotonic() - record.started_at
        if result.state == "succeeded":
            result.progress = 100
            result.logs.append(f"{record.description} answered in {elapsed:.1f}s.")
        with self._lock:
            if record.canceled:
                logger.info("%s call %s finished after it was canceled; its result is dropped (the "
                            "provider still bills it)", self.provider, record.request_id)
                self._calls.pop(record.request_id, None)
                return
            record.result = result
            record.finished_at = time.monotonic()

    def _forget_stale(self, now: float) -> None:
        """Drop finished calls nobody polled for a long time. Caller holds the lock."""
        stale = [rid for rid, record in self._calls.items()
                 if record.finished_at is not None and now - record.finished_at > FINISHED_CALL_TTL_SECONDS]
        for rid in stale:
            del self._calls[rid]


class SyncAdapterMixin:
    """poll and cancel for adapters whose calls run on a SyncCallRegistry thread (OpenAI, Anthropic,
    OpenRouter): the job's request id is the registry's."""

    registry: SyncCallRegistry

    def poll(self, job: Any) -> ProviderStatus:
        return self.registry.poll(job.request_id)

    def cancel(self, job: Any) -> bool:
        return self.registry.cancel(job.request_id)


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


def tokens_cost(usage: dict[str, int], prices_per_million: dict[str, Any]) -> Decimal | None:
    """USD for token counts at per-million prices from the catalog's config, e.g.
    usage {"input_tokens": 10, "output_tokens": 2} with prices {"input_tokens": "2", "output_tokens": "10"}.
    None when the config names no prices (the pipeline then charges the price card)."""
    if not prices_per_million:
        return None
    total = Decimal(0)
    for name, price in prices_per_million.items():
        total += Decimal(int(usage.get(name) or 0)) * Decimal(str(price))
    # Not rounded here: the pipeline rounds the final cost up to a micro-dollar (pricing.actual).
    return total / Decimal(1_000_000)


def client_timeout(config: dict[str, Any], default: float) -> float:
    return float(config.get("request_timeout_seconds") or default)


__all__ = ["FINISHED_CALL_TTL_SECONDS", "LOST_MESSAGE", "SyncCallRegistry", "client_timeout",
           "retry_after_seconds", "tokens_cost", "SyncAdapterMixin"]
