"""`FalProvider`: submit to fal's queue, poll its status (new log lines, queue position) and result,
cancel, and the key each request was submitted with. The SDK's client, errors, inputs/outputs and
webhooks live beside it in this package (see its docstring)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import fal_client
from django.conf import settings

from generations.providers.base import CatalogModel, ProviderError, ProviderJob, ProviderStatus, WebhookEvent
from generations.providers.fal import webhook
from generations.providers.fal.client import fal_client_for
from generations.providers.fal.errors import detail_message, error_from_exception, error_from_http
from generations.providers.fal.io import build_arguments, outputs_from_result, result_fields

logger = logging.getLogger(__name__)


class FalProvider:
    name = "fal"
    # fal serves generated files from its CDN (v3.fal.media and other *.fal.media hosts, §1.3).
    output_hosts = ("fal.media", "*.fal.media")
    parks_between_polls = True  # the request lives in fal's queue: any worker can poll it

    def __init__(self) -> None:
        # request id → the key it was submitted with, so poll/cancel in this worker use the same key
        # (ProviderJob.data is stored in the database, so it never holds the key). A job polled by
        # another process falls back to `credentials=` or the platform key: see docs/providers/fal.md.
        self._request_keys: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    # credentials --------------------------------------------------------------------------------

    def _api_key(self, credentials: Mapping[str, str] | None, request_id: str | None = None) -> str:
        key = (credentials or {}).get("api_key", "")
        if not key and request_id:
            with self._lock:
                key = self._request_keys.get(request_id, "")
        if not key:
            key = settings.PROVIDER_KEYS.get("fal", "")
        if not key:
            raise ProviderError("No fal.ai API key is configured (set FAL_KEY, or save your own key).",
                                code="missing_key")
        return key

    def _remember_key(self, request_id: str, key: str) -> None:
        with self._lock:
            self._request_keys[request_id] = key
            while len(self._request_keys) > 10_000:
                self._request_keys.popitem(last=False)

    def check_credentials(self, credentials: Mapping[str, str] | None) -> None:
        """Ask for a CDN upload token: authenticated, free, and without side effects (no request is
        queued, nothing is stored)."""
        client = fal_client_for(self._api_key(credentials))
        try:
            client._token_manager.refresh()
        except Exception as exc:
            raise error_from_exception(exc) from exc

    # submit / poll / cancel ---------------------------------------------------------------------

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob:
        key = self._api_key(credentials)
        client = fal_client_for(key)
        try:
            arguments = build_arguments(model, inputs, client)
            handle = client.submit(model.provider_model, arguments, webhook_url=webhook_url)
        except ProviderError:
            raise
        except Exception as exc:
            raise error_from_exception(exc) from exc
        self._remember_key(handle.request_id, key)
        data = {"app": model.provider_model, "status_url": handle.status_url,
                "response_url": handle.response_url, "cancel_url": handle.cancel_url,
                "result_fields": result_fields(model.config), "output_kind": model.output_kind,
                "logs_seen": 0}
        return ProviderJob(provider=self.name, request_id=handle.request_id, data=data)

    def poll(self, job: ProviderJob, *, credentials: dict[str, str] | None = None) -> ProviderStatus:
        client = fal_client_for(self._api_key(credentials or job.credentials, job.request_id))
        handle = client.handle(job.data, job.request_id)
        try:
            status = handle.status(with_logs=True)
        except fal_client.FalClientHTTPError as exc:
            if exc.status_code == 404:
                # fal no longer knows the request: the runner submits it again (base.py, "lost").
                return ProviderStatus(state="failed", error_code="lost", retryable=True,
                                      error_message=detail_message(exc.message) or "fal.ai lost the request.")
            raise error_from_http(exc) from exc
        except Exception as exc:
            raise error_from_exception(exc) from exc

        logs = self._new_log_lines(job, getattr(status, "logs", None))
        if isinstance(status, fal_client.Queued):
            return ProviderStatus(state="queued", queue_position=status.position, logs=logs)
        if isinstance(status, fal_client.InProgress):
            return ProviderStatus(state="running", logs=logs)
        assert isinstance(status, fal_client.Completed)
        if status.error:
            return self._failed(handle, status, logs)
        try:
            result = handle.get(interval=0)
        except fal_client.FalClientHTTPError as exc:
            error = error_from_http(exc)
            return ProviderStatus(state="failed", logs=logs, error_code=error.code,
                                  error_message=error.message, retryable=error.retryable)
        except Exception as exc:
            raise error_from_exception(exc) from exc
        outputs = outputs_from_result(result, fields=job.data.get("result_fields") or None,
                                      kind_hint=job.data.get("output_kind"))
        if not outputs:
            return ProviderStatus(state="failed", logs=logs, error_code="no_output",
                                  error_message="fal.ai reported success but returned no file.")
        usage: dict[str, Any] = {"outputs": len(outputs)}
        metrics = status.metrics or {}
        if isinstance(metrics.get("inference_time"), int | float):
            usage["inference_seconds"] = metrics["inference_time"]
        # fal does not report a per-request cost; the pipeline prices the job from its price card.
        return ProviderStatus(state="succeeded", progress=100, logs=logs, outputs=outputs, usage=usage,
                              cost_usd=None)

    def _failed(self, handle: fal_client.SyncRequestHandle, status: fal_client.Completed,
                logs: list[str]) -> ProviderStatus:
        """A COMPLETED status carrying `error`/`error_type` (§1.2). Its `error` is terse
        ("Invalid status code: 422"); the result URL answers with the model's own `detail`."""
        if status.error_type in ("client_cancelled", "client_disconnected"):
            return ProviderStatus(state="canceled", logs=logs)
        try:
            handle.get(interval=0)
        except fal_client.FalClientHTTPError as exc:
            error = error_from_http(exc)
            return ProviderStatus(state="failed", logs=logs, error_code=error.code,
                                  error_message=error.message, retryable=error.retryable)
        except Exception:
            logger.warning("fal: could not read the error detail for %s", handle.request_id, exc_info=True)
        retryable = status.error_type in ("request_timeout", "startup_timeout", "runner_scheduling_failure",
                                          "runner_connection_timeout", "runner_disconnected",
                                          "runner_connection_refused", "runner_connection_error",
                                          "runner_incomplete_response", "internal_error")
        return ProviderStatus(state="failed", logs=logs, error_code=status.error_type or "provider_error",
                              error_message=str(status.error), retryable=retryable)

    @staticmethod
    def _new_log_lines(job: ProviderJob, entries: list[dict[str, Any]] | None) -> list[str]:
        """fal returns every log line so far on each status call; we pass on only the new ones."""
        if not entries:
            return []
        seen = int(job.data.get("logs_seen", 0))
        if seen > len(entries):  # a different view of the logs (e.g. after a resubmit): start over
            seen = 0
        job.data["logs_seen"] = len(entries)
        lines = []
        for entry in entries[seen:]:
            message = str(entry.get("message", "")).rstrip() if isinstance(entry, dict) else str(entry)
            if message:
                lines.append(message)
        return lines

    def cancel(self, job: ProviderJob, *, credentials: dict[str, str] | None = None) -> bool:
        """PUT the cancel URL: a request, not a stop (https://fal.ai/docs/inference-api/queue/cancel).
        A queued request is removed; a running one answers 202 CANCELLATION_REQUESTED and its app is
        signalled, but "the model app decides how to stop the work" and may finish, and fal bills
        successful outputs; 400 ALREADY_COMPLETED means the result is waiting at the response URL. So
        the runner polls on after this either way, and stores a result that arrives.

        True when fal accepted the request (2xx), False when it refused (already completed, unknown)
        or could not be reached. Never raises."""
        try:
            client = fal_client_for(self._api_key(credentials or job.credentials, job.request_id))
            client.handle(job.data, job.request_id).cancel()
        except fal_client.FalClientHTTPError as exc:
            logger.info("fal: cancel of %s refused (%s): %s", job.request_id, exc.status_code, exc.message)
            return False
        except Exception:
            logger.warning("fal: cancel of %s failed", job.request_id, exc_info=True)
            return False
        return True


    # webhooks ------------------------------------------------------------------------------------

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, *, source: str = "") -> WebhookEvent:
        """Verify and decode a callback (generations.providers.fal.webhook)."""
        return webhook.parse_webhook(headers, body, source=source)


__all__ = ["FalProvider"]
