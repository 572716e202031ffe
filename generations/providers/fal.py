"""fal.ai, through the official `fal-client` SDK's queue API (submit → status with logs → result, cancel).

Wire protocol and SDK behaviour: ../shared/reference/provider-protocols.md §1 and fal-client 1.0.3
(`fal_client/client.py`); the fake in tests/fakes/fal.py speaks the same protocol. How it maps states,
errors and costs, and where the reference and the SDK disagree: docs/providers/fal.md.

Three things the SDK does not let us configure per client, and what we do instead:

- **Where requests go.** fal-client builds URLs from module globals fixed at import time
  (`QUEUE_URL_FORMAT = f"https://{FAL_QUEUE_RUN_HOST}/"`, `REST_URL`, `CDN_URL`). Rather than rewrite
  those process-wide globals on every call, our `SyncClient` subclass gives the SDK an httpx client
  whose transport sends requests for fal's own hosts to `settings.PROVIDER_BASE_URLS["fal"]` (a
  gateway, or a test fake) and leaves every other URL alone. The SDK still builds every URL and
  still follows the status/response/cancel URLs the queue hands back, so nothing is hand-written.
- **Which CAs are trusted.** The SDK's httpx clients use the system store; the transport above is
  built with `verify=` `settings.PROVIDER_CA_BUNDLE` when set (the TLS fakes' local CA).
- **Retries.** The SDK retries 408/409/429, ingress 502-504 and transport errors up to
  `MAX_ATTEMPTS = 10` times with backoff up to 30 s, ignoring Retry-After. Our pipeline already does
  bounded, typed retries with backoff that honour Retry-After (generations.services), and retrying in
  two layers multiplies the waits, so the SDK's loop is switched off (one attempt). That knob exists
  only as a module global; nothing else in this process uses fal-client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import mimetypes
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import fal_client
import fal_client.client as fal_sdk
import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.cache import cache

from generations.providers._sync import retry_after_seconds
from generations.providers.base import (
    AssetInput,
    CatalogModel,
    Output,
    ProviderError,
    ProviderJob,
    ProviderStatus,
    WebhookEvent,
    WebhookRejected,
)

logger = logging.getLogger(__name__)

fal_sdk.MAX_ATTEMPTS = 1  # see the module docstring: the pipeline owns retries

# fal's own hosts (fal_client/client.py RUN_URL_FORMAT, QUEUE_URL_FORMAT, REST_URL, CDN_URL and
# _BACKUP_DOMAINS); requests to these go to the configured base URL when there is one.
FAL_HOSTS = frozenset({"fal.run", "queue.fal.run", "falrun.com", "queue.falrun.com", "rest.fal.ai",
                       "v3.fal.media"})

# Inputs up to this size go inline as data URIs (fal_client.encode; model inputs accept them, reference
# §1.3); bigger files go through the SDK's upload to fal's CDN so request bodies stay small.
INLINE_INPUT_MAX_BYTES = 256 * 1024

SUBMIT_TIMEOUT_SECONDS = 30.0  # the SDK's default is 120 s; status/result/cancel use its QUEUE_POLL_TIMEOUT

# Webhook verification (reference §1.4).
WEBHOOK_TOLERANCE_SECONDS = 300
JWKS_CACHE_SECONDS = 24 * 3600
# A signature no cached key verifies triggers a JWKS refetch (fal may have rotated its keys) at most once
# per JWKS_REFRESH_MIN_SECONDS *per source address*, so forged webhooks from one place cannot use up the
# refetch a genuine webhook signed with a new key needs; and at most JWKS_REFRESH_MAX_PER_WINDOW times in
# that window from all sources together, so a flood cannot turn us into a JWKS hammer.
JWKS_REFRESH_MIN_SECONDS = 600
JWKS_REFRESH_MAX_PER_WINDOW = 30

OUTPUT_KINDS = ("image", "video", "audio", "text", "mesh", "other")
MESH_MIMES = {"model/gltf-binary": ".glb", "model/obj": ".obj"}


# --- the SDK client, pointed where settings say --------------------------------------------------

class _RoutedTransport(httpx.BaseTransport):
    """Sends requests for fal's hosts to `base_url` (scheme, host, port and path prefix); others pass
    through unchanged. Rebuilds the request the way the SDK's own `_backup_request` does."""

    def __init__(self, base_url: str, inner: httpx.BaseTransport) -> None:
        self.base = httpx.URL(base_url.rstrip("/") + "/")
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in FAL_HOSTS:
            url = request.url.copy_with(scheme=self.base.scheme, host=self.base.host, port=self.base.port,
                                        path=self.base.path.rstrip("/") + request.url.path)
            headers = request.headers.copy()
            headers["Host"] = url.netloc.decode("ascii")
            request = httpx.Request(request.method, url, headers=headers, stream=request.stream,
                                    extensions=request.extensions.copy())
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _ssl_verify(ca_bundle: str) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True


class _TokenManager(fal_sdk.CDNTokenManager):
    """The SDK's CDN upload-token manager, fetching through our configured httpx client (the SDK's
    own `_refresh_token` opens a bare `httpx.Client()`, which neither routes nor trusts our CA)."""

    def __init__(self, auth: Any, http: httpx.Client) -> None:
        super().__init__(auth)
        self._http = http

    def _refresh_token(self) -> fal_sdk.CDNToken:
        # Same request and parsing as CDNTokenManager._refresh_token (fal_client/client.py), but errors
        # surface as FalClientHTTPError with fal's `detail`, like every other SDK call.
        response = fal_sdk._request(self._http, "POST", self._url, headers=self._headers, json={})
        data = response.json()
        return fal_sdk.CDNToken(token=data["token"], token_type=data["token_type"],
                                base_upload_url=data["base_url"],
                                expires_at=datetime.fromisoformat(data["expires_at"]))

    def refresh(self) -> fal_sdk.CDNToken:
        with self._lock:
            self._token = self._refresh_token()
            return self._token


@dataclass(frozen=True)
class StudioFalClient(fal_client.SyncClient):
    """`fal_client.SyncClient` with a base URL and CA bundle. Only how its httpx clients are built
    changes; every request is still made by the SDK."""

    base_url: str = ""
    ca_bundle: str = ""

    def _transport(self) -> httpx.BaseTransport:
        inner = httpx.HTTPTransport(verify=_ssl_verify(self.ca_bundle))
        if self.base_url:
            return _RoutedTransport(self.base_url, inner)
        # No override: keep the SDK's fallback to falrun.com when fal.run is unreachable.
        return fal_sdk.BackupDomainTransport(transport=inner)

    @cached_property
    def _client(self) -> httpx.Client:
        return httpx.Client(transport=self._transport(),
                            headers={"Authorization": self._auth.header_value, "User-Agent": fal_sdk.USER_AGENT},
                            timeout=self.default_timeout, follow_redirects=True)

    @cached_property
    def _token_manager(self) -> _TokenManager:
        return _TokenManager(self._auth, self._client)

    def _get_cdn_client(self) -> httpx.Client:
        token = self._token_manager.get_token()
        return httpx.Client(transport=self._transport(),
                            headers={"Authorization": f"{token.token_type} {token.token}",
                                     "User-Agent": fal_sdk.USER_AGENT},
                            timeout=self.default_timeout)

    def handle(self, data: Mapping[str, Any], request_id: str) -> fal_client.SyncRequestHandle:
        """A handle on a submitted request, from the URLs the queue returned at submit."""
        return fal_client.SyncRequestHandle(request_id=request_id, response_url=data["response_url"],
                                            status_url=data["status_url"], cancel_url=data["cancel_url"],
                                            client=self._client)


_clients: OrderedDict[tuple[str, str, str], StudioFalClient] = OrderedDict()
_clients_lock = threading.Lock()
MAX_CACHED_CLIENTS = 64  # one per (key, base URL, CA bundle); users' own keys make this more than one


def fal_client_for(api_key: str) -> StudioFalClient:
    """A client for this key and the current settings, re-used so connections are pooled."""
    base_url = settings.PROVIDER_BASE_URLS.get("fal", "")
    ca_bundle = settings.PROVIDER_CA_BUNDLE
    cache_key = (api_key, base_url, ca_bundle)
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            client = StudioFalClient(key=api_key, default_timeout=SUBMIT_TIMEOUT_SECONDS,
                                     base_url=base_url, ca_bundle=ca_bundle)
            _clients[cache_key] = client
            while len(_clients) > MAX_CACHED_CLIENTS:
                _, old = _clients.popitem(last=False)
                if "_client" in old.__dict__:
                    old._client.close()
        else:
            _clients.move_to_end(cache_key)
        return client


# --- errors ----------------------------------------------------------------------------------------

def _header(headers: Mapping[str, str], name: str) -> str | None:
    name = name.lower()
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


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
    """Map an SDK HTTP error to ours (reference §1.5): 429, 408 and 5xx are transient, the rest final;
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
    flag = (_header(headers, "x-fal-retryable") or "").lower()
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


# --- inputs and outputs -----------------------------------------------------------------------------

def _encode_asset(client: StudioFalClient, asset: AssetInput) -> str:
    data = asset.read()
    if len(data) <= INLINE_INPUT_MAX_BYTES:
        return fal_client.encode(data, asset.mime)
    return client.upload(data, asset.mime, file_name=asset.name or None)


def build_arguments(model: CatalogModel, inputs: Mapping[str, Any], client: StudioFalClient) -> dict[str, Any]:
    """Our validated inputs → the model's fal arguments. Input names in the catalog are fal's own;
    `config` describes the few reshapings (see generations/catalog/fal.json)."""
    config = model.config
    arguments: dict[str, Any] = {}
    for name, value in inputs.items():
        if value is None:
            continue
        if isinstance(value, AssetInput):
            value = _encode_asset(client, value)
        arguments[name] = value
    size_fields = config.get("image_size_fields")
    if size_fields:
        width, height = (arguments.pop(field, None) for field in size_fields)
        if width and height:
            arguments["image_size"] = {"width": int(width), "height": int(height)}
    for name in config.get("string_fields", []):
        if name in arguments:
            arguments[name] = str(arguments[name])
    for name, value in config.get("extra_arguments", {}).items():
        arguments.setdefault(name, value)
    return arguments


def _file_kind(mime: str, name: str) -> str:
    major = mime.split("/", 1)[0]
    if major in ("image", "video", "audio"):
        return major
    if mime in MESH_MIMES or name.lower().endswith((".glb", ".gltf", ".obj")):
        return "mesh"
    if major == "text":
        return "text"
    return "other"


def _output_from_file(value: Mapping[str, Any], *, kind_hint: str | None) -> Output | None:
    """One fal `File` ({url, content_type, file_name, file_size, width, height}) as an Output. A
    `data:` URL (sync_mode, reference §1.3) is decoded here; https URLs are fetched by
    generations.fetch from `output_hosts`."""
    url = value.get("url")
    if not isinstance(url, str) or not url:
        return None
    mime = str(value.get("content_type") or "")
    name = str(value.get("file_name") or "")
    data = None
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        try:
            data = base64.b64decode(payload) if header.endswith(";base64") else unquote(payload).encode()
        except (binascii.Error, ValueError) as exc:
            raise ProviderError("fal.ai returned a malformed data URI.", code="bad_output") from exc
        mime = mime or header[5:].split(";", 1)[0]
        url = None
    elif not name:
        name = PurePosixPath(urlsplit(url).path).name
    mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if mime == "application/octet-stream" and name:
        mime = mimetypes.guess_type(name)[0] or mime
    kind = _file_kind(mime, name)
    if kind == "other" and kind_hint in OUTPUT_KINDS:
        kind = kind_hint
    if kind == "mesh" and "." not in name:
        name = f"model{MESH_MIMES.get(mime, '.glb')}"
    metadata = {key: value[key] for key in ("width", "height", "file_size") if value.get(key) is not None}
    return Output(kind=kind, mime=mime, data=data, url=url, filename=name, metadata=metadata)  # type: ignore[arg-type]


def _files_in(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping) and "url" in value:
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Mapping) and "url" in item]
    return []


def outputs_from_result(result: Any, *, fields: list[str] | None = None, kind_hint: str | None = None) -> list[Output]:
    """The files in a model's result. With `fields` (the catalog's `result_field`), only those; else
    every top-level File or list of Files (webhooks, which do not say which model they are for)."""
    if not isinstance(result, Mapping):
        return []
    names = fields if fields else list(result.keys())
    outputs = []
    for name in names:
        for item in _files_in(result.get(name)):
            output = _output_from_file(item, kind_hint=kind_hint)
            if output is not None:
                outputs.append(output)
    return outputs


def _result_fields(config: Mapping[str, Any]) -> list[str]:
    field = config.get("result_field")
    if isinstance(field, str):
        return [field]
    return list(field or [])


# --- the adapter ----------------------------------------------------------------------------------

class FalProvider:
    name = "fal"
    # fal serves generated files from its CDN (v3.fal.media and other *.fal.media hosts, reference §1.3).
    output_hosts = ("fal.media", "*.fal.media")

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
                "result_fields": _result_fields(model.config), "output_kind": model.output_kind,
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
        """A COMPLETED status carrying `error`/`error_type` (reference §1.2). Its `error` is terse
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
        """Verify fal's ED25519 webhook signature (reference §1.4) and decode the callback. `source` is
        the sender's address: a signature no cached key verifies refetches the keys at most once per
        window per source (see `_verify`)."""
        request_id = _header(headers, "x-fal-webhook-request-id")
        user_id = _header(headers, "x-fal-webhook-user-id")
        timestamp = _header(headers, "x-fal-webhook-timestamp")
        signature_hex = _header(headers, "x-fal-webhook-signature")
        if not (request_id and user_id and timestamp and signature_hex):
            raise WebhookRejected("missing fal webhook signature headers")
        try:
            sent_at = int(timestamp)
            signature = bytes.fromhex(signature_hex)
        except ValueError as exc:
            raise WebhookRejected("malformed fal webhook timestamp or signature") from exc
        if abs(time.time() - sent_at) > WEBHOOK_TOLERANCE_SECONDS:
            raise WebhookRejected("fal webhook timestamp is outside the allowed window")
        message = "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()
        if not self._verify(message, signature, source=source):
            raise WebhookRejected("fal webhook signature does not verify")
        try:
            event = json.loads(body)
        except ValueError as exc:
            raise WebhookRejected("fal webhook body is not JSON") from exc
        if not isinstance(event, dict) or str(event.get("request_id", "")) != request_id:
            raise WebhookRejected("fal webhook body does not match its signed request id")
        return WebhookEvent(request_id=request_id, status=self._webhook_status(event))

    @staticmethod
    def _webhook_status(event: Mapping[str, Any]) -> ProviderStatus:
        if event.get("status") == "OK":
            if event.get("payload_error"):
                return ProviderStatus(state="failed", error_code="bad_output",
                                      error_message=f"fal.ai could not deliver the result: {event['payload_error']}")
            outputs = outputs_from_result(event.get("payload"))
            if not outputs:
                return ProviderStatus(state="failed", error_code="no_output",
                                      error_message="fal.ai reported success but returned no file.")
            return ProviderStatus(state="succeeded", progress=100, outputs=outputs, usage={"outputs": len(outputs)})
        # status "ERROR": `error` is e.g. "Invalid status code: 422", `payload` the model's error body.
        error = str(event.get("error") or "fal.ai reported a failure.")
        payload = event.get("payload") if isinstance(event.get("payload"), Mapping) else {}
        match = re.search(r"\b(\d{3})\b", error)
        http_status = int(match.group(1)) if match else 500
        detail = payload.get("detail") if payload else None
        mapped = error_from_http(fal_client.FalClientHTTPError(
            message=detail if detail is not None else error, status_code=http_status, response_headers={},
            response=None, error_type=payload.get("error_type") if payload else None))  # type: ignore[arg-type]
        return ProviderStatus(state="failed", error_code=mapped.code, error_message=mapped.message,
                              retryable=mapped.retryable)

    def _verify(self, message: bytes, signature: bytes, *, source: str) -> bool:
        keys, fresh = self._jwks(force=False)
        if _any_key_verifies(keys, message, signature):
            return True
        # Signed with a key we do not hold: fal rotated its keys since we cached them, or the request is
        # forged. fal's webhooks name no key id (only the four X-Fal-Webhook-* headers), so "no cached
        # key verifies" is the only sign of an unknown key; refetch then, rate limited per source.
        if fresh or not _refetch_allowed(source):
            return False
        keys, _ = self._jwks(force=True)
        return _any_key_verifies(keys, message, signature)

    @staticmethod
    def _jwks(*, force: bool) -> tuple[list[Ed25519PublicKey], bool]:
        """fal's public keys, cached at most 24 h (reference §1.4). Returns (keys, fetched_now)."""
        cache_key = f"fal:jwks:{_url_digest()}"
        raw = None if force else cache.get(cache_key)
        fetched = False
        if raw is None:
            try:
                response = httpx.get(settings.FAL_JWKS_URL, timeout=10.0,
                                     verify=_ssl_verify(settings.PROVIDER_CA_BUNDLE))
                response.raise_for_status()
                raw = response.json().get("keys", [])
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                raise WebhookRejected(f"could not fetch fal's webhook keys: {exc}") from exc
            cache.set(cache_key, raw, JWKS_CACHE_SECONDS)
            fetched = True
        keys = []
        for jwk in raw if isinstance(raw, list) else []:
            if not (isinstance(jwk, dict) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"):
                continue
            try:
                x = str(jwk["x"])
                keys.append(Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))))
            except (KeyError, ValueError, binascii.Error):
                continue
        return keys, fetched


def _url_digest() -> str:
    return hashlib.sha256(settings.FAL_JWKS_URL.encode()).hexdigest()[:16]


def _refetch_allowed(source: str) -> bool:
    """One JWKS refetch per source address per window, and a ceiling for all sources together.

    The old single global slot let one forger, sending a bad signature every ten minutes, keep us from
    ever refetching: a genuine webhook signed with a rotated key was refused until the 24 h cache ran
    out (fal retries a webhook for 2 hours, and the sweep polls parked jobs, so it is a delay, not a
    loss). Keyed per source, a forger only spends its own slot."""
    digest = _url_digest()
    who = hashlib.sha256(_sender(source).encode()).hexdigest()[:16]
    if not cache.add(f"fal:jwks-refresh:{digest}:{who}", True, JWKS_REFRESH_MIN_SECONDS):
        return False
    window = int(time.time() // JWKS_REFRESH_MIN_SECONDS)
    total_key = f"fal:jwks-refresh-total:{digest}:{window}"
    cache.add(total_key, 0, JWKS_REFRESH_MIN_SECONDS * 2)
    try:
        total = cache.incr(total_key)
    except ValueError:  # expired between add and incr
        cache.add(total_key, 1, JWKS_REFRESH_MIN_SECONDS * 2)
        total = 1
    return total <= JWKS_REFRESH_MAX_PER_WINDOW


def _sender(source: str) -> str:
    """The unit a refetch slot belongs to: an IPv4 address, or an IPv6 address's /64. One host is
    routinely given a whole /64, so keyed per IPv6 address a single forger would have endless slots and
    could spend the ceiling shared by every sender."""
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return source or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _any_key_verifies(keys: list[Ed25519PublicKey], message: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False


__all__ = ["FalProvider", "StudioFalClient", "fal_client_for", "outputs_from_result", "error_from_http",
           "detail_message"]
