"""Replicate, through the official `replicate` SDK (1.0.7).

Over 400 lines as one module: its client, errors, inputs, outputs and status are each small and used
only by this adapter; it becomes a package like fal's when one of them grows.

Wire protocol and SDK behaviour: the summary in docs/providers/replicate.md ("The wire protocol"),
corrected there where the installed SDK disagrees.

- Official models (flux, minimax, ...) are created by name, `POST /v1/models/{owner}/{name}/predictions`;
  community models by version, `POST /v1/predictions` with the catalog's `config.version`.
- A prediction goes starting → processing → succeeded | failed | canceled. Replicate reports no queue
  position ("starting" covers both waiting for a worker and a cold boot), so we report `queued` without one.
- `logs` is one growing string; each poll returns only the lines added since the previous poll (the
  offset lives in `job.data`), and the last tqdm bar ("  45%|████▌     | 9/20", or with a description,
  "Sampling:  45%|████▌     | 9/20") becomes the progress; bars are never copied into the log.
- Replicate reports no price. Models billed by GPU time carry `config.usd_per_second` (their hardware's
  price on replicate.com/pricing) and we report `metrics.predict_time` × that as the cost, on failed
  and canceled predictions too: Replicate bills the time they ran
  (https://replicate.com/docs/topics/predictions/lifecycle). Models billed per output report
  `usage["units"]` (outputs delivered) and the price card does the rest; a failed or canceled one
  delivered nothing and reports no cost.
- Outputs are https URLs on replicate.delivery (returned as `Output(url=...)`, fetched at once by
  generations.fetch because Replicate deletes them after an hour) or `data:` URIs (decoded here).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import mimetypes
import re
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from posixpath import basename
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import httpx
import replicate
from django.conf import settings
from replicate.client import RetryTransport
from replicate.exceptions import ReplicateError
from replicate.prediction import Prediction
from replicate.webhook import Webhooks, WebhookSigningSecret, WebhookValidationError

from generations.providers.base import (
    AssetInput,
    CatalogModel,
    Output,
    OutputKind,
    ProviderError,
    ProviderJob,
    ProviderStatus,
    State,
    WebhookEvent,
    WebhookRejected,
    as_output_kind,
)

logger = logging.getLogger(__name__)

NAME = "replicate"

# Replicate takes files inline as data URLs up to 256 KB; anything larger goes through the Files API
# (`POST /v1/files`) and the model gets the file's URL. https://replicate.com/docs/topics/predictions/input-files
DATA_URI_MAX_BYTES = 256 * 1024

# Per-request limits. A create that times out may still have created the prediction (Replicate
# documents no idempotency key), so this is generous for the write and short for the connect.
TIMEOUT = httpx.Timeout(30.0, connect=5.0, pool=10.0)

# The SDK's RetryTransport retries GETs 10 times and sleeps for any Retry-After it is given, uncapped.
# Our pipeline already retries transient failures with backoff and an attempt cap
# (the runner's requeue), so the SDK may retry a poll once, briefly, and no more. Creates
# (POST) are never retried by the SDK, and must not be: a retried create is a second paid prediction.
SDK_MAX_ATTEMPTS = 2
SDK_MAX_RETRY_WAIT = 2.0

# Webhook timestamps older (or newer) than this are refused, as the SDK's docs suggest (5 minutes).
WEBHOOK_TOLERANCE_SECONDS = 300

STATES: dict[str, State] = {
    "starting": "queued",
    "processing": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}

# A tqdm bar as models print it, `{desc}: {percentage:3.0f}%|{bar}| {n}/{total} [...]` with the
# description optional (tqdm's default bar_format, l_bar = "{desc}: {percentage:3.0f}%|"):
# "  45%|████▌     | 9/20 [00:04<00:05, 2.1it/s]" or "Sampling:  50%|█████     | 2/4 [00:01<00:01]".
# The "| n/total" part keeps an ordinary line such as "accuracy: 95%|" from reading as a bar.
TQDM_LINE = re.compile(r"^\s*(?:[^|\r\n]*?:\s*)?(\d{1,3})%\|[^|]*\|\s*\d+/\d+")

# Replicate's wording when the platform (not the model) lost a prediction, e.g. a preempted worker:
# "Prediction interrupted; please retry (code: PA)". Anything else from a failed prediction is the
# model's own verdict and would fail again.
TRANSIENT_FAILURE = re.compile(r"please retry|\(code: PA\)", re.IGNORECASE)
CONTENT_POLICY = re.compile(r"nsfw|safety|flagged|sensitive content", re.IGNORECASE)

EXTRA_MIME_TYPES = {".glb": "model/gltf-binary", ".webp": "image/webp", ".mp4": "video/mp4"}
KIND_BY_MIME_PREFIX: dict[str, OutputKind] = {"image/": "image", "video/": "video", "audio/": "audio", "model/": "mesh", "text/": "text"}

_retry_after = threading.local()  # the Retry-After of the last response on this thread (see _client)

# Which key started a prediction, so poll and cancel use the same one (a user's own key, or ours).
# The runner polls in the process that submitted; after a restart we fall back to the platform key.
_KEYS_BY_REQUEST: OrderedDict[str, str] = OrderedDict()
_KEYS_LOCK = threading.Lock()
_KEYS_MAX = 4096


class _BoundedRetryTransport(RetryTransport):
    """The SDK's own retry policy (idempotent methods; 429/503/504), with a cap on every wait: the
    SDK sleeps for a numeric Retry-After however long it is (replicate/client.py _calculate_sleep)."""

    def _calculate_sleep(self, attempts_made: int, headers: Any) -> float:
        return min(super()._calculate_sleep(attempts_made, headers), self.max_backoff_wait)


def _remember_retry_after(response: httpx.Response) -> None:
    # ReplicateError keeps the problem details but not the headers, so the Retry-After of a 429 is
    # picked up here; the error is raised on this same thread right after this hook runs.
    _retry_after.value = response.headers.get("retry-after")


@lru_cache(maxsize=16)
def _client(token: str, base_url: str, ca_bundle: str) -> replicate.Client:
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
    transport = _BoundedRetryTransport(httpx.HTTPTransport(verify=verify), max_attempts=SDK_MAX_ATTEMPTS,
                                       max_backoff_wait=SDK_MAX_RETRY_WAIT)
    # The SDK wraps any `transport=` we pass in its own 10-attempt RetryTransport, and httpx ignores
    # `verify=` once a transport is given (replicate/client.py _build_httpx_client). A mount for every
    # URL takes precedence over that default transport, so the trust store and the retry cap are ours.
    return replicate.Client(api_token=token, base_url=base_url or None, timeout=TIMEOUT,
                            mounts={"all://": transport},
                            event_hooks={"response": [_remember_retry_after]})


def _platform_key() -> str:
    return settings.PROVIDER_KEYS.get(NAME, "")


def _client_for(token: str) -> replicate.Client:
    if not token:
        raise ProviderError("No Replicate API token is configured (REPLICATE_API_TOKEN, or your own key).",
                            code="missing_key", retryable=False)
    return _client(token, settings.PROVIDER_BASE_URLS.get(NAME, ""), settings.PROVIDER_CA_BUNDLE or "")


def _token(credentials: Mapping[str, str] | None) -> str:
    return (credentials or {}).get("api_key") or _platform_key()


def _remember_key(request_id: str, token: str) -> None:
    with _KEYS_LOCK:
        _KEYS_BY_REQUEST[request_id] = token
        _KEYS_BY_REQUEST.move_to_end(request_id)
        while len(_KEYS_BY_REQUEST) > _KEYS_MAX:
            _KEYS_BY_REQUEST.popitem(last=False)


def _key_for(job: ProviderJob, credentials: Mapping[str, str] | None) -> str:
    if credentials and credentials.get("api_key"):
        return credentials["api_key"]
    with _KEYS_LOCK:
        return _KEYS_BY_REQUEST.get(job.request_id) or _platform_key()


# --- errors ----------------------------------------------------------------------------------------

def _retry_after_seconds(detail: str) -> float | None:
    raw = getattr(_retry_after, "value", None)
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
    # The documented 429 body: "Request was throttled. Expected available in 1 second."
    match = re.search(r"available in (\d+(?:\.\d+)?) second", detail or "")
    return float(match.group(1)) if match else None


def _api_error(exc: ReplicateError) -> ProviderError:
    """RFC 7807 problem details (replicate/exceptions.py) → our error, with Replicate's own words."""
    status = exc.status or 0
    detail = (exc.detail or exc.title or "").strip() or f"Replicate answered HTTP {status}."
    if status == 429:
        return ProviderError(detail, code="rate_limited", retryable=True, retry_after=_retry_after_seconds(detail))
    if status >= 500:
        return ProviderError(detail, code=f"upstream_{status}", retryable=True,
                             retry_after=_retry_after_seconds(detail))
    code = {401: "invalid_key", 402: "insufficient_credit", 403: "forbidden", 404: "not_found",
            409: "conflict", 422: "invalid_input"}.get(status, "provider_error")
    if status == 422 and exc.title and exc.title not in detail:
        detail = f"{exc.title}: {detail}"
    return ProviderError(detail, code=code, retryable=False)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    _retry_after.value = None
    try:
        return fn(*args, **kwargs)
    except ReplicateError as exc:
        raise _api_error(exc) from exc
    except httpx.TimeoutException as exc:
        raise ProviderError("Replicate did not answer in time.", code="timeout", retryable=True) from exc
    except httpx.TransportError as exc:
        raise ProviderError(f"Could not reach Replicate ({type(exc).__name__}).", code="connection_error",
                            retryable=True) from exc
    except ValueError as exc:  # a body the SDK's pydantic models refuse (missing id/model/version/status)
        raise ProviderError(f"Replicate sent a response this studio could not read: {exc}",
                            code="bad_response", retryable=False) from exc


# --- inputs ----------------------------------------------------------------------------------------

def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime or 'application/octet-stream'};base64,{base64.b64encode(data).decode('ascii')}"


def _encode_asset(client: replicate.Client, asset: AssetInput) -> str:
    data = asset.read()
    if len(data) <= DATA_URI_MAX_BYTES:
        return _data_uri(data, asset.mime)
    uploaded = _call(client.files.create, io.BytesIO(data), filename=asset.name or f"{asset.id}",
                     content_type=asset.mime or None)
    return uploaded.urls["get"]


def _encode_inputs(client: replicate.Client, model: CatalogModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Our validated inputs → the model's input object. `config.list_inputs` sends a single asset as a
    one-element list under another name (firtoz/trellis takes `images: [...]`); `config.fixed_inputs`
    are sent on every call (e.g. asking trellis for a GLB and no preview videos)."""
    renames: dict[str, str] = model.config.get("list_inputs", {})
    payload: dict[str, Any] = {}
    for name, value in inputs.items():
        if value is None:
            continue
        if isinstance(value, AssetInput):
            value = _encode_asset(client, value)
        if name in renames:
            payload[renames[name]] = [value]
        else:
            payload[name] = value
    payload.update(model.config.get("fixed_inputs", {}))
    return payload


# --- outputs ---------------------------------------------------------------------------------------

def _decode_data_uri(uri: str) -> tuple[bytes, str]:
    header, _, payload = uri.partition(",")
    mime = header[5:].split(";", 1)[0] or "application/octet-stream"
    try:
        if ";base64" in header:
            return base64.b64decode(payload, validate=True), mime
        return unquote_to_bytes(payload), mime
    except (binascii.Error, ValueError) as exc:
        raise ProviderError("Replicate returned a data URI that is not valid base64.", code="bad_output") from exc


def _mime_for(name: str) -> str:
    ext = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    return EXTRA_MIME_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _kind_for(mime: str, fallback: str) -> OutputKind:
    for prefix, kind in KIND_BY_MIME_PREFIX.items():
        if mime.startswith(prefix):
            return kind
    return as_output_kind(fallback) or "other"


def _file_values(output: Any, output_key: str | None) -> list[str]:
    """The output's file references in order: one string, a list (num_outputs), or an object whose
    values are files (firtoz/trellis: {"model_file": ..., "color_video": ...}; `output_key` picks one)."""
    if isinstance(output, Mapping):
        if output_key:
            return _file_values(output.get(output_key), None)
        values: list[str] = []
        for value in output.values():
            values.extend(_file_values(value, None))
        return values
    if isinstance(output, list | tuple):
        values = []
        for value in output:
            values.extend(_file_values(value, None))
        return values
    if isinstance(output, str) and output.startswith(("https://", "data:")):
        return [output]
    # `http://` stays a plain string in the SDK too (helpers.transform_output); we never fetch it.
    return []


def _outputs(prediction: Prediction, output_kind: str, output_key: str | None) -> list[Output]:
    outputs: list[Output] = []
    for index, ref in enumerate(_file_values(prediction.output, output_key)):
        if ref.startswith("data:"):
            data, mime = _decode_data_uri(ref)
            ext = mimetypes.guess_extension(mime) or ""
            outputs.append(Output(kind=_kind_for(mime, output_kind), mime=mime, data=data,
                                  filename=f"output-{index + 1}{ext}", metadata={"prediction": prediction.id}))
        else:
            name = basename(urlsplit(ref).path) or f"output-{index + 1}"
            mime = _mime_for(name)
            outputs.append(Output(kind=_kind_for(mime, output_kind), mime=mime, url=ref, filename=name,
                                  metadata={"prediction": prediction.id}))
    return outputs


# --- logs and progress -----------------------------------------------------------------------------

def _new_log_lines(logs: str, data: dict[str, Any], *, final: bool) -> tuple[list[str], int | None]:
    """Lines added since the offset in `data` (advanced here); a trailing partial line waits for the
    next poll unless the prediction is over. tqdm bars become progress, not log lines."""
    offset = int(data.get("logs_offset", 0))
    if len(logs) < offset:  # logs never shrink, except when Replicate removes a prediction's data
        offset = 0
    fresh = logs[offset:]
    if not final:
        cut = max(fresh.rfind("\n"), fresh.rfind("\r"))
        fresh = fresh[: cut + 1] if cut >= 0 else ""
    data["logs_offset"] = offset + len(fresh)
    lines: list[str] = []
    progress: int | None = None
    for line in re.split(r"[\r\n]+", fresh):
        if not line.strip():
            continue
        match = TQDM_LINE.match(line)
        if match:
            progress = min(100, int(match.group(1)))
        else:
            lines.append(line.rstrip()[:2000])
    return lines, progress


def _cost(prediction: Prediction, usd_per_second: Any) -> tuple[dict[str, Any], Decimal | None]:
    usage: dict[str, Any] = {}
    predict_time = (prediction.metrics or {}).get("predict_time")
    if isinstance(predict_time, int | float) and not isinstance(predict_time, bool):
        usage["predict_time"] = predict_time
    cost = None
    if usd_per_second is not None and "predict_time" in usage:
        # Exact; the pipeline rounds money up to the micro-dollar (pricing.actual).
        cost = Decimal(str(usage["predict_time"])) * Decimal(str(usd_per_second))
    return usage, cost


def _status(prediction: Prediction, data: dict[str, Any]) -> ProviderStatus:
    state = STATES.get(prediction.status, "running")
    final = state in ("succeeded", "failed", "canceled")
    logs, progress = _new_log_lines(prediction.logs or "", data, final=final)
    status = ProviderStatus(state=state, logs=logs)
    if progress is not None:
        data["progress"] = progress
    if state == "running":
        status.progress = data.get("progress")
    if state == "succeeded":
        status.progress = 100
        status.outputs = _outputs(prediction, data.get("output_kind", "other"), data.get("output_key"))
        status.usage, status.cost_usd = _cost(prediction, data.get("usd_per_second"))
        if data.get("count_outputs"):
            status.usage["units"] = len(status.outputs)
    elif state == "canceled":
        status.usage, status.cost_usd = _cost(prediction, data.get("usd_per_second"))
    elif state == "failed":
        message = (prediction.error or "").strip() or "The model failed without saying why."
        status.error_message = message
        status.usage, status.cost_usd = _cost(prediction, data.get("usd_per_second"))
        if TRANSIENT_FAILURE.search(message):
            status.error_code, status.retryable = "interrupted", True
        elif CONTENT_POLICY.search(message):
            status.error_code = "content_policy"
        else:
            status.error_code = "model_error"
    return status


# --- the adapter -----------------------------------------------------------------------------------

class ReplicateProvider:
    name = NAME
    output_hosts = ("replicate.delivery", "*.replicate.delivery")
    parks_between_polls = True  # a prediction lives at Replicate: any worker can poll it

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob:
        token = _token(credentials)
        client = _client_for(token)
        payload = _encode_inputs(client, model, inputs)
        params: dict[str, Any] = {}
        if webhook_url:
            # `start` and `completed` are always delivered; `logs`/`output` would add a call every 500 ms.
            # https://replicate.com/docs/topics/webhooks/setup-webhook
            params = {"webhook": webhook_url, "webhook_events_filter": ["start", "completed"]}
        version = model.config.get("version")
        if version:
            prediction = _call(client.predictions.create, version=version, input=payload, **params)
        else:
            prediction = _call(client.models.predictions.create, model=model.provider_model, input=payload,
                               **params)
        _remember_key(prediction.id, token)
        data: dict[str, Any] = {"model": model.id, "output_kind": model.output_kind, "logs_offset": 0}
        for key in ("usd_per_second", "output_key", "count_outputs"):
            if model.config.get(key) is not None:
                data[key] = model.config[key]
        return ProviderJob(provider=NAME, request_id=prediction.id, data=data)

    def poll(self, job: ProviderJob, *, credentials: dict[str, str] | None = None) -> ProviderStatus:
        client = _client_for(_key_for(job, credentials or job.credentials))
        prediction = _call(client.predictions.get, job.request_id)
        return _status(prediction, job.data)

    def cancel(self, job: ProviderJob, *, credentials: dict[str, str] | None = None) -> bool:
        """`POST /v1/predictions/{id}/cancel`. True when Replicate took the cancel (the prediction was
        not already over), False otherwise. Never raises. The runner polls on afterwards: a canceled
        prediction that had started reports the `predict_time` it is billed for, and one that finished
        first is delivered."""
        try:
            client = _client_for(_key_for(job, credentials or job.credentials))
            prediction = _call(client.predictions.cancel, job.request_id)
        except ProviderError as exc:
            logger.warning("replicate cancel of %s failed: %s", job.request_id, exc.message)
            return False
        return prediction.status not in ("succeeded", "failed")

    def check_credentials(self, credentials: dict[str, str] | None) -> None:
        """`GET /v1/account`, the cheapest authenticated call; raises ProviderError("invalid_key")."""
        client = _client_for(_token(credentials))
        _call(client.accounts.current)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes | str, *, source: str = "") -> WebhookEvent:
        """Verify with the SDK's own verifier (replicate/webhook.py), then decode the prediction.
        https://replicate.com/docs/topics/webhooks/verify-webhook. `source` (the sender's address) is
        not needed: the HMAC secret is local, so a bad signature costs no network call."""
        secret = settings.REPLICATE_WEBHOOK_SECRET
        if not secret:
            raise WebhookRejected("REPLICATE_WEBHOOK_SECRET is not set, so no webhook can be verified.")
        try:
            text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
            # validate() returns None when the signature is good and raises otherwise; its `-> bool`
            # overloads are misleading. A non-numeric timestamp or bad base64 raises plain ValueError.
            Webhooks.validate(headers=dict(headers.items()), body=text,
                              secret=WebhookSigningSecret(key=secret), tolerance=WEBHOOK_TOLERANCE_SECONDS)
        except (WebhookValidationError, ValueError) as exc:
            raise WebhookRejected(f"Replicate webhook refused: {exc}") from exc
        try:
            prediction = Prediction(**json.loads(text))
        except (ValueError, TypeError) as exc:
            raise WebhookRejected(f"Replicate webhook body is not a prediction: {exc}") from exc
        # A webhook carries no catalog context: output kinds come from file names, and the cost of a
        # time-billed model is settled by the runner's own poll.
        return WebhookEvent(request_id=prediction.id, status=_status(prediction, {"logs_offset": 0}))


__all__ = ["ReplicateProvider", "DATA_URI_MAX_BYTES"]
