"""Google Gen AI (Gemini, Imagen, Veo) through the official `google-genai` SDK, pinned at 3.4.0.

Three call shapes, chosen by the catalog entry's `config["method"]`:

- `generate_content` (Gemini text, and Gemini native image output such as gemini-2.5-flash-image) on
  the Gemini Developer API. One synchronous HTTP call.
- `generate_images` (Imagen 4). One synchronous `:predict` call. **Vertex mode only in 3.4.0.**
- `generate_videos` (Veo). A long-running operation: submit returns its name, `poll` asks for it with
  `operations.get` (Vertex: `:fetchPredictOperation`) until `done`. **Vertex mode only in 3.4.0.**

In google-genai 3.4.0 `models.generate_images` and `models.generate_videos` raise "only supported in
Gemini Enterprise Agent Platform mode" unless the client has `vertexai=True` (google/genai/models.py,
`_generate_images` / `_generate_videos`), so those two run on a Vertex AI client in express mode
(`vertexai=True` with an API key, no project), which calls `/v1beta1/publishers/google/models/...`.

Synchronous calls run behind submit/poll on a thread per call (generations.providers._sync, shared
with the OpenAI and Anthropic adapters): `submit` reads the inputs (asset bytes included, so a bad input
fails the submit), starts the call and returns; `poll` says "running" until Google answers, then hands
over the result once. Doing the call inside `submit` would block the runner for the whole call: no
heartbeat (the sweep re-queues a job silent for STALE_RUNNING_AFTER), no cancel check, no deadline. A
poll for an id this process does not hold (the worker restarted mid-call) reports `lost`, and the runner
submits again. Errors of a synchronous call therefore arrive as a failed poll status (same code,
message, retryable and Retry-After as the ProviderError), not as an exception from `submit`.

Retries: the SDK's own are off (`HttpRetryOptions(attempts=1)`; google-genai retries nothing by
default anyway) because the pipeline already retries transient failures with bounded backoff; two
layers of retries would multiply the wait and the upstream charges.

Google has no queue position or progress for these calls and no cancel for operations in 3.4.0
(google/genai/operations.py has only `get`), so `cancel` returns False for Veo; the pipeline still marks
the generation canceled and releases its hold, but a Veo render already running is paid for upstream.
For a synchronous call `cancel` stops waiting (True); the request already sent is billed by Google.
"""

from __future__ import annotations

import logging
import re
import ssl
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings

from generations.providers._sync import Call, SyncCallRegistry, client_timeout
from generations.providers.base import (
    CatalogModel,
    Output,
    ProviderError,
    ProviderJob,
    ProviderStatus,
)

logger = logging.getLogger(__name__)

PROVIDER = "google"

# google-genai 3.4.0 defaults the Developer API to "v1" (_api_client.GOOGLE_AI_API_DEFAULT_VERSION;
# 1.x and 2.x used "v1beta"). We pin the version instead of inheriting a default that changed between
# majors, and pin "v1beta" because that is the surface ai.google.dev documents for generateContent with
# system instructions, thinking config and image output (imageConfig / responseModalities). A catalog
# entry can override it with config["api_version"].
DEVELOPER_API_VERSION = "v1beta"
# The SDK's own default in Vertex mode (GOOGLE_GENAI_API_VERSION unset); pinned for the same reason.
VERTEX_API_VERSION = "v1beta1"

SYNC_TIMEOUT_SECONDS = 180.0  # one generateContent / :predict call, unless the catalog says otherwise
POLL_TIMEOUT_SECONDS = 60.0  # one operations.get; the video bytes come back inline in its body
CHECK_TIMEOUT_SECONDS = 15.0

# Finish / block reasons that mean the output (or the prompt) was stopped by a safety or policy filter
# (types.FinishReason / types.BlockedReason in 3.4.0).
POLICY_FINISH_REASONS = {
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
}
# google.rpc.Code values for a failed long-running operation that a fresh attempt can get past:
# DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE.
RETRYABLE_RPC_CODES = {4, 8, 10, 13, 14}
# Vertex reports prompts refused by its Responsible AI filters as plain 400s / operation errors whose
# message says so (e.g. "...violate Google's Responsible AI practices..."); there is no separate code.
POLICY_MESSAGE = re.compile(r"responsible ai|usage guidelines|safety (?:filter|polic)", re.I)

# --- clients and errors -------------------------------------------------------------------------------

def _api_key(credentials: Mapping[str, str] | None) -> str:
    # The runner passes the key the job was submitted on (generations.credentials), on submit and on
    # every polled job (ProviderJob.credentials). The platform key is only the fallback for direct calls.
    key = (credentials or {}).get("api_key") or settings.PROVIDER_KEYS.get(PROVIDER, "")
    if not key:
        raise ProviderError("No Google API key is configured (set GEMINI_API_KEY, or save your own key).",
                            code="missing_key", retryable=False)
    return key


def _client(api_key: str, *, vertex: bool, timeout: float, api_version: str | None = None) -> Any:
    from google import genai
    from google.genai import types

    options = types.HttpOptions(
        # Empty setting: the SDK's default host (generativelanguage.googleapis.com, or
        # aiplatform.googleapis.com in Vertex express mode). Set: both modes use it (tests, gateways).
        base_url=settings.PROVIDER_BASE_URLS.get(PROVIDER) or None,
        api_version=api_version or (VERTEX_API_VERSION if vertex else DEVELOPER_API_VERSION),
        timeout=int(timeout * 1000),  # HttpOptions.timeout is in milliseconds
        retry_options=types.HttpRetryOptions(attempts=1),  # see the module docstring
    )
    if settings.PROVIDER_CA_BUNDLE:
        options.client_args = {"verify": ssl.create_default_context(cafile=settings.PROVIDER_CA_BUNDLE)}
    return genai.Client(vertexai=vertex, api_key=api_key, http_options=options)


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


def _from_sdk_error(exc: Exception) -> ProviderError:
    """One SDK exception as a ProviderError: 429/5xx/timeouts/connection trouble retryable, the rest final
    with Google's own message (users see it)."""
    import httpx
    from google.genai import errors

    try:
        import httpx2
        transport_errors: tuple[type[BaseException], ...] = (httpx.TransportError, httpx2.TransportError)
        timeouts: tuple[type[BaseException], ...] = (httpx.TimeoutException, httpx2.TimeoutException)
    except ImportError:  # httpx2 is optional for google-genai
        transport_errors, timeouts = (httpx.TransportError,), (httpx.TimeoutException,)

    if isinstance(exc, errors.APIError):
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
    if isinstance(exc, timeouts):
        return ProviderError("Google did not answer in time.", code="timeout", retryable=True)
    if isinstance(exc, transport_errors):
        return ProviderError(f"Could not reach Google: {exc}", code="connection_error", retryable=True)
    if isinstance(exc, ValueError):  # the SDK refusing a parameter before sending anything
        return ProviderError(f"Google SDK refused the request: {exc}", code="invalid_input", retryable=False)
    raise exc


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ProviderError:
        raise
    except Exception as exc:
        raise _from_sdk_error(exc) from exc


def _policy(message: str) -> ProviderError:
    return ProviderError(message, code="content_policy", retryable=False)


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


# --- inputs --------------------------------------------------------------------------------------------

def _asset_part(value: Any, name: str) -> tuple[bytes, str]:
    if not callable(getattr(value, "read", None)):
        raise ProviderError(f"{name} must be an uploaded asset.", code="invalid_input")
    return value.read(), (getattr(value, "mime", "") or "application/octet-stream")


def _text_input(model: CatalogModel, inputs: Mapping[str, Any]) -> list[Any]:
    """The user turn: the configured text field, plus any asset fields named in config["asset_inputs"]."""
    from google.genai import types

    parts: list[Any] = []
    for field in model.config.get("asset_inputs", []):
        value = inputs.get(field)
        if not value:
            continue
        data, mime = _asset_part(value, field)
        if mime.startswith("text/"):
            parts.append(types.Part.from_text(text=data.decode("utf-8", "replace")))
        else:  # images and PDFs go to Gemini as inline bytes
            parts.append(types.Part.from_bytes(data=data, mime_type=mime))
    text = str(inputs.get(model.config.get("text_input", "prompt")) or "").strip()
    if text:
        parts.append(types.Part.from_text(text=text))
    if not parts:
        raise ProviderError("Give the model some text to work on.", code="invalid_input")
    return parts


# --- costs ---------------------------------------------------------------------------------------------

def _price(config: Mapping[str, Any], key: str) -> Decimal | None:
    value = config.get(key)
    return Decimal(str(value)) if value is not None else None


def _token_usage(response: Any, config: Mapping[str, Any]) -> tuple[dict[str, Any], Decimal | None]:
    """usageMetadata → token counts, and their cost at the catalog's per-1M-token prices. Thinking tokens
    are billed as output (ai.google.dev/gemini-api/docs/pricing); image output tokens have their own price."""
    meta = getattr(response, "usage_metadata", None)
    if meta is None:
        return {}, None
    prompt = int(meta.prompt_token_count or 0)
    candidates = int(meta.candidates_token_count or 0)
    thoughts = int(meta.thoughts_token_count or 0)
    image_out = sum(int(d.token_count or 0) for d in (meta.candidates_tokens_details or [])
                    if _enum_name(d.modality) == "IMAGE")
    text_out = max(0, candidates - image_out) + thoughts
    usage = {"input_tokens": prompt, "output_tokens": candidates, "thinking_tokens": thoughts,
             "image_output_tokens": image_out}
    price_in = _price(config, "usd_per_1m_input_tokens")
    price_out = _price(config, "usd_per_1m_output_tokens")
    if price_in is None or price_out is None:
        return usage, None
    price_image = _price(config, "usd_per_1m_output_image_tokens") or price_out
    # Unrounded: the pipeline rounds the final cost (up, to 6 places) in pricing.actual.
    return usage, (prompt * price_in + text_out * price_out + image_out * price_image) / Decimal(1_000_000)


# --- the synchronous calls -----------------------------------------------------------------------------

def _check_content_response(response: Any) -> Any:
    """The first candidate, or a final error when Google blocked the prompt or the output."""
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and feedback.block_reason:
        reason = _enum_name(feedback.block_reason)
        detail = f" {feedback.block_reason_message}" if feedback.block_reason_message else ""
        raise _policy(f"Google blocked the prompt ({reason}).{detail}")
    if not response.candidates:
        raise ProviderError("Gemini returned no answer.", code="no_output", retryable=True)
    candidate = response.candidates[0]
    reason = _enum_name(candidate.finish_reason)
    if reason in POLICY_FINISH_REASONS:
        detail = f" {candidate.finish_message}" if candidate.finish_message else ""
        raise _policy(f"Gemini stopped because the output was flagged ({reason}).{detail}")
    return candidate


def _parts(candidate: Any) -> list[Any]:
    content = getattr(candidate, "content", None)
    return list(getattr(content, "parts", None) or [])


def _generation_config(model: CatalogModel, inputs: Mapping[str, Any]) -> Any:
    from google.genai import types

    config = model.config
    # No tools are passed, so automatic function calling has nothing to do; off keeps it out of the logs.
    kwargs: dict[str, Any] = {"automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True)}
    system = config.get("system_instruction") or inputs.get("system_prompt")
    if system:
        kwargs["system_instruction"] = system
    for field in ("temperature", "max_output_tokens", "seed"):
        if inputs.get(field) is not None:
            kwargs[field] = inputs[field]
    if "thinking_budget" in config:
        kwargs["thinking_config"] = types.ThinkingConfig(thinking_budget=int(config["thinking_budget"]))
    if model.output_kind == "image":
        kwargs["response_modalities"] = list(config.get("response_modalities", ["IMAGE"]))
        if inputs.get("aspect_ratio"):
            kwargs["image_config"] = types.ImageConfig(aspect_ratio=inputs["aspect_ratio"])
    return types.GenerateContentConfig(**kwargs)


def _prepare_generate_content(model: CatalogModel, inputs: Mapping[str, Any], api_key: str) -> Call:
    # Inputs (asset bytes included) are read here, in submit, so a bad input fails the submit itself.
    contents, config = _text_input(model, inputs), _generation_config(model, inputs)
    timeout = client_timeout(model.config, SYNC_TIMEOUT_SECONDS)

    def call() -> ProviderStatus:
        with _client(api_key, vertex=False, timeout=timeout, api_version=model.config.get("api_version")) as client:
            response = _call(client.models.generate_content, model=model.provider_model, contents=contents,
                             config=config)
        return _content_result(model, response, uuid.uuid4().hex[:8])

    return call


def _content_result(model: CatalogModel, response: Any, tag: str) -> ProviderStatus:
    candidate = _check_content_response(response)
    usage, cost = _token_usage(response, model.config)
    reason = _enum_name(candidate.finish_reason)
    parts = _parts(candidate)
    texts = [p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False)]
    logs = [f"Gemini used {usage.get('input_tokens', 0)} input and "
            f"{usage.get('output_tokens', 0) + usage.get('thinking_tokens', 0)} output tokens"
            + (f" (${cost})." if cost is not None else ".")]
    stem = model.provider_model.replace("/", "-")
    if model.output_kind == "image":
        images = [p.inline_data for p in parts
                  if getattr(p, "inline_data", None) is not None and p.inline_data.data
                  and str(p.inline_data.mime_type or "").startswith("image/")]
        if not images:
            if reason == "NO_IMAGE" or texts:
                said = " ".join(texts).strip()
                raise ProviderError("Gemini answered without an image" + (f": {said}" if said else "."),
                                    code="no_output", retryable=False)
            raise ProviderError("Gemini returned no image.", code="no_output", retryable=True)
        extension = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
        outputs = [Output(kind="image", mime=blob.mime_type, data=blob.data,
                          filename=f"{stem}-{tag}-{i + 1}.{extension.get(blob.mime_type, 'png')}",
                          metadata={"model_text": " ".join(texts).strip()} if texts else {})
                   for i, blob in enumerate(images)]
        usage["images"] = len(outputs)
    else:
        text = "".join(texts).strip()
        if not text:
            if reason == "MAX_TOKENS":
                raise ProviderError("Gemini used its whole output budget (max output tokens) before answering; "
                                    "raise the limit and try again.", code="max_tokens", retryable=False)
            raise ProviderError("Gemini returned an empty answer.", code="no_output", retryable=False)
        if reason == "MAX_TOKENS":
            logs.append("The answer was cut off at the max output tokens limit.")
        extension = model.config.get("output_extension", "md")
        outputs = [Output(kind="text", mime="text/plain", data=text.encode("utf-8"),
                          filename=f"{stem}-{tag}.{extension}",
                          metadata={"finish_reason": reason, "response_id": response.response_id or ""})]
    return ProviderStatus(state="succeeded", progress=100, logs=logs, outputs=outputs, usage=usage, cost_usd=cost)


def _prepare_generate_images(model: CatalogModel, inputs: Mapping[str, Any], api_key: str) -> Call:
    from google.genai import types

    requested = int(inputs.get("num_images") or 1)
    config = types.GenerateImagesConfig(
        number_of_images=requested,
        aspect_ratio=inputs.get("aspect_ratio"),
        # Ask for the filter's reason so a blocked image can be explained instead of vanishing.
        include_rai_reason=True,
        person_generation=model.config.get("person_generation"),
    )
    prompt = str(inputs.get("prompt") or "").strip()
    timeout = client_timeout(model.config, SYNC_TIMEOUT_SECONDS)

    def call() -> ProviderStatus:
        with _client(api_key, vertex=True, timeout=timeout) as client:
            response = _call(client.models.generate_images, model=model.provider_model, prompt=prompt,
                             config=config)
        return _images_result(model, response, requested, uuid.uuid4().hex[:8])

    return call


def _images_result(model: CatalogModel, response: Any, requested: int, tag: str) -> ProviderStatus:
    generated = list(response.generated_images or [])
    images = [g for g in generated if g.image is not None and g.image.image_bytes]
    filtered = [g.rai_filtered_reason for g in generated if g.rai_filtered_reason]
    if not images:
        raise _policy(("Imagen's safety filters removed the image: " + "; ".join(filtered)) if filtered
                      else "Imagen returned no image; Google's safety filters probably removed it.")
    logs = [f"Imagen returned {len(images)} of {requested} image(s)."]
    if filtered:
        logs.append("Filtered by Google: " + "; ".join(filtered))
    stem = model.provider_model
    outputs = []
    for i, g in enumerate(images):
        mime = g.image.mime_type or "image/png"
        ext = "jpg" if mime == "image/jpeg" else "png"
        outputs.append(Output(kind="image", mime=mime, data=g.image.image_bytes,
                              filename=f"{stem}-{tag}-{i + 1}.{ext}",
                              metadata={"enhanced_prompt": g.enhanced_prompt} if g.enhanced_prompt else {}))
    # Imagen is priced per image delivered (ai.google.dev/gemini-api/docs/pricing): the price card applies.
    return ProviderStatus(state="succeeded", progress=100, logs=logs, outputs=outputs,
                          usage={"images": len(outputs), "units": len(outputs)})


SYNC_METHODS = {"generate_content": _prepare_generate_content, "generate_images": _prepare_generate_images}


# --- Veo (long-running operation) -----------------------------------------------------------------------

def _submit_video(model: CatalogModel, inputs: Mapping[str, Any], api_key: str) -> ProviderJob:
    from google.genai import types

    image = None
    if inputs.get("image"):
        data, mime = _asset_part(inputs["image"], "image")
        image = types.Image(image_bytes=data, mime_type=mime)
    prompt = str(inputs.get("prompt") or "").strip() or None
    seconds = int(inputs.get("duration_seconds") or model.config.get("default_duration_seconds", 8))
    config = types.GenerateVideosConfig(
        number_of_videos=1,
        duration_seconds=seconds,
        aspect_ratio=inputs.get("aspect_ratio"),
        resolution=inputs.get("resolution"),
        negative_prompt=inputs.get("negative_prompt") or None,
        seed=inputs.get("seed"),
        # Vertex requires generateAudio for Veo 3 models; the price card is the with-audio rate.
        generate_audio=bool(model.config.get("generate_audio", True)),
        person_generation=model.config.get("person_generation"),
    )
    with _client(api_key, vertex=True, timeout=client_timeout(model.config, 60.0)) as client:
        operation = _call(client.models.generate_videos, model=model.provider_model,
                          source=types.GenerateVideosSource(prompt=prompt, image=image), config=config)
    if not operation.name:
        raise ProviderError("Google accepted the video job but returned no operation name.",
                            code="provider_error", retryable=True)
    return ProviderJob(provider=PROVIDER, request_id=operation.name,
                       data={"method": "generate_videos", "operation": operation.name,
                             "model": model.provider_model, "seconds": seconds})


def _poll_video(job: ProviderJob, api_key: str) -> ProviderStatus:
    from google.genai import types

    name = job.data.get("operation") or job.request_id
    polls = int(job.data.get("polls", 0)) + 1
    job.data["polls"] = polls  # in memory for this run; the runner keeps the same job object between polls
    with _client(api_key, vertex=True, timeout=POLL_TIMEOUT_SECONDS) as client:
        operation = _call(client.operations.get, types.GenerateVideosOperation(name=name))
    if not operation.done:
        logs = [f"Veo is rendering (operation {name.rsplit('/', 1)[-1]})."] if polls == 1 else []
        return ProviderStatus(state="running", logs=logs)
    if operation.error:
        code = int(operation.error.get("code") or 0)
        message = str(operation.error.get("message") or "The video job failed at Google.")
        if POLICY_MESSAGE.search(message):
            return ProviderStatus(state="failed", error_code="content_policy", error_message=f"Google: {message}")
        return ProviderStatus(state="failed", error_code="provider_error", error_message=f"Google: {message}",
                              retryable=code in RETRYABLE_RPC_CODES)
    result = operation.result or operation.response
    generated = list(getattr(result, "generated_videos", None) or [])
    videos = [g.video for g in generated if g.video is not None and g.video.video_bytes]
    if not videos:
        reasons = list(getattr(result, "rai_media_filtered_reasons", None) or [])
        if reasons or getattr(result, "rai_media_filtered_count", 0):
            return ProviderStatus(state="failed", error_code="content_policy",
                                  error_message="Google's safety filters removed the video: "
                                  + ("; ".join(reasons) or "no reason given."))
        if any(g.video is not None and g.video.uri for g in generated):
            # Only when an output_gcs_uri was requested, which this adapter never does.
            return ProviderStatus(state="failed", error_code="unsupported_output",
                                  error_message="Google stored the video in Cloud Storage instead of returning it.")
        return ProviderStatus(state="failed", error_code="no_output", retryable=True,
                              error_message="Google finished the video job without a video.")
    seconds = int(job.data.get("seconds") or 8)
    stem = str(job.data.get("model") or "veo")
    outputs = [Output(kind="video", mime=v.mime_type or "video/mp4", data=v.video_bytes,
                      filename=f"{stem}-{name.rsplit('/', 1)[-1][:8]}-{i + 1}.mp4",
                      metadata={"duration_seconds": seconds, "operation": name})
               for i, v in enumerate(videos)]
    units = seconds * len(outputs)
    # Veo is priced per second of generated video: the price card (per second) applies to `units`.
    return ProviderStatus(state="succeeded", progress=100, outputs=outputs,
                          logs=[f"Veo finished: {len(outputs)} video(s), {units} s."],
                          usage={"videos": len(outputs), "seconds": units, "units": units})


# --- the adapter ---------------------------------------------------------------------------------------

def _method(model: CatalogModel) -> str:
    method = model.config.get("method")
    if method:
        return str(method)
    if model.provider_model.startswith("imagen-"):
        return "generate_images"
    if model.provider_model.startswith("veo-"):
        return "generate_videos"
    return "generate_content"


class GoogleProvider:
    name = PROVIDER
    # Every output arrives as bytes (inlineData, bytesBase64Encoded), so nothing is downloaded by URL.
    output_hosts: tuple[str, ...] = ()

    def __init__(self) -> None:
        # Synchronous calls (generateContent, Imagen :predict) run on a thread per call behind submit/poll,
        # so the runner keeps its heartbeat, cancel checks and deadline while Google works.
        self.registry = SyncCallRegistry(PROVIDER)
        # Keys per request id for Veo polls: ProviderJob.data is stored on the Generation row, so the key
        # never goes there. A poll in a fresh worker falls back to the platform key.
        self._keys: dict[str, str] = {}

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob:
        # webhook_url is ignored: the pipeline polls Google (see docs/providers/google.md).
        api_key = _api_key(credentials)
        method = _method(model)
        if method == "generate_videos":
            job = _submit_video(model, inputs, api_key)
            self._keys[job.request_id] = api_key
            return job
        prepare = SYNC_METHODS.get(method)
        if prepare is None:
            raise ProviderError(f"The Google adapter has no method {method!r}.", code="unknown_model")
        request_id = self.registry.start(prepare(model, inputs, api_key),
                                         description=f"Google {model.provider_model}")
        return ProviderJob(provider=PROVIDER, request_id=request_id,
                           data={"method": method, "model": model.provider_model})

    def poll(self, job: ProviderJob) -> ProviderStatus:
        if job.data.get("method") == "generate_videos":
            key = _api_key(job.credentials) if job.credentials else (self._keys.get(job.request_id) or _api_key(None))
            status = _poll_video(job, key)
            if status.terminal:
                self._keys.pop(job.request_id, None)
            return status
        return self.registry.poll(job.request_id)

    def cancel(self, job: ProviderJob) -> bool:
        if job.data.get("method") == "generate_videos":
            # google-genai 3.4.0 has no operations.cancel (operations.py has only `get`): nothing to send.
            self._keys.pop(job.request_id, None)
            return False
        # A synchronous call can only stop being waited for; Google still bills the request already sent.
        return self.registry.cancel(job.request_id)

    def check_credentials(self, credentials: dict[str, str] | None) -> None:
        """One page of models.list on the Gemini Developer API: authenticated, free, no model run."""
        api_key = _api_key(credentials)
        with _client(api_key, vertex=False, timeout=CHECK_TIMEOUT_SECONDS) as client:
            try:
                client.models.list(config={"page_size": 1})
            except Exception as exc:
                raise _from_sdk_error(exc) from exc


__all__ = ["GoogleProvider"]
