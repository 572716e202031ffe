"""The OpenAI adapter: GPT Image generation and edits, chat completions and text to speech, through the
official `openai` SDK (3.54).

Every OpenAI endpoint used here is synchronous: the answer comes back on the same HTTP request. The
call therefore runs on a thread of this worker (generations.providers.jobs explains why, and what
cancel can and cannot do); `poll` reports "running" until it returns.

- Outputs are bytes: GPT image models always answer with `b64_json` (never a URL), speech is the raw
  audio body, chat is the message text (stored as a Markdown file).
- Cost is computed from the response's `usage` token counts and the per-million prices in the catalog
  entry's `config.token_prices`; text to speech has no usage, so `tts-1` is priced by characters
  (`config.usd_per_million_characters`) and `gpt-4o-mini-tts` falls back to the price card.
- Errors: `{"error": {"message", "type", "param", "code"}}` (https://platform.openai.com/docs/guides/error-codes).
  429 (except `insufficient_quota`), 5xx, timeouts and connection errors are retryable; everything
  else is final and carries OpenAI's own message.
- A chat completion without an answer (`text.chat_text`, shared with OpenRouter) is a failed status that
  still carries the tokens' usage and cost: with `finish_reason: "length"` it is final ("raise Max
  tokens"), any other empty answer is a retryable `no_content`.

`import openai` below is the SDK, not this module: imports are absolute, and this file is only ever
imported as `generations.providers.openai`.
"""

from __future__ import annotations

import base64
import io
import ssl
from decimal import Decimal
from functools import lru_cache
from typing import Any, cast

import openai
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam
from PIL import Image

from generations.providers.base import (
    AssetInput,
    CatalogModel,
    Output,
    ProviderError,
    ProviderJob,
    ProviderStatus,
)
from generations.providers.http import client_timeout, retry_after_seconds
from generations.providers.jobs import SyncAdapterMixin, ThreadJobRegistry
from generations.providers.text import (
    api_key_for,
    chat_messages,
    chat_text,
    failed_after_billing,
    max_tokens_for,
    sdk_call_error,
    text_messages,
    text_output,
    tokens_cost,
)

IMAGE_MIMES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EDITABLE_MIMES = {"image/png", "image/jpeg", "image/webp"}  # images.edit docstring: png, webp or jpg
AUDIO_MIMES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg",
               "aac": "audio/aac"}
# OpenAI's codes for prompts or images its safety system refused (images guide, "Content moderation";
# error-codes guide). Users see OpenAI's message with our "content_policy" code.
CONTENT_POLICY_CODES = {"content_policy_violation", "moderation_blocked", "content_filter",
                        "image_generation_user_error"}


# --- the client and its errors, shared with the OpenRouter adapter (same SDK, same error shapes) --------

def http_client(timeout: float) -> Any:
    """An httpx client trusting settings.PROVIDER_CA_BUNDLE (the TLS test fakes), else None (the SDK's own)."""
    if not settings.PROVIDER_CA_BUNDLE:
        return None
    context = ssl.create_default_context(cafile=settings.PROVIDER_CA_BUNDLE)
    return openai.DefaultHttpxClient(verify=context, timeout=timeout)


def openai_client(provider: str, api_key: str, *, timeout: float,
                  default_headers: dict[str, str] | None = None) -> openai.OpenAI:
    """A client for this key and endpoint, shared by every call in this process. Building one costs
    tens of milliseconds (an SSL context loads the CA bundle), more than a whole call to a nearby API
    (bench/adapters.py), and the SDK's clients are thread-safe and keep connections alive."""
    return _cached_client(provider, api_key, timeout, tuple(sorted((default_headers or {}).items())),
                          settings.PROVIDER_BASE_URLS.get(provider) or None, settings.PROVIDER_CA_BUNDLE)


@lru_cache(maxsize=64)
def _cached_client(provider: str, api_key: str, timeout: float, headers: tuple[tuple[str, str], ...],
                   base_url: str | None, ca_bundle: str) -> openai.OpenAI:
    # max_retries=0: the runner already retries transient failures with backoff and a cap
    # (the runner's requeue, GENERATION_MAX_ATTEMPTS); SDK retries on top would multiply the attempts and
    # hide Retry-After from it.
    return openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout,
                         http_client=http_client(timeout), default_headers=dict(headers) or None)


def _error_fields(body: Any) -> tuple[str, str, str]:
    """(message, type, code) from an OpenAI-style error body; OpenRouter puts a number in `code`."""
    error = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        return str(error), "", ""
    return (str(error.get("message") or ""), str(error.get("type") or ""), str(error.get("code") or ""))


def sdk_error(exc: Exception, label: str) -> ProviderError:
    """Map an `openai` SDK exception to a ProviderError (retryable only for 429, 5xx, timeouts and
    connection errors; `_base_client._should_retry` retries the same ones plus 408/409)."""
    unanswered = sdk_call_error(exc, label, openai)
    if unanswered is not None:
        return unanswered
    assert isinstance(exc, openai.APIStatusError)  # sdk_call_error answered every other kind
    status = exc.status_code
    message, kind, code = _error_fields(exc.body)
    message = message or f"{label} answered HTTP {status}."
    if status == 429:
        if code == "insufficient_quota" or kind == "insufficient_quota":
            # Same status as a rate limit, but it is the account's billing: waiting does not help.
            return ProviderError(message, code="quota_exceeded")
        return ProviderError(message, code="rate_limited", retryable=True,
                             retry_after=retry_after_seconds(exc.response.headers))
    if status == 408:
        return ProviderError(message, code="timeout", retryable=True)
    if status >= 500:
        return ProviderError(message, code="provider_unavailable", retryable=True,
                             retry_after=retry_after_seconds(exc.response.headers))
    if status == 401:
        return ProviderError(message, code="invalid_key")
    if status == 403:
        return ProviderError(message, code="permission_denied")
    if status == 404:
        return ProviderError(message, code="unknown_model")
    if code in CONTENT_POLICY_CODES or kind in CONTENT_POLICY_CODES:
        return ProviderError(message, code="content_policy")
    return ProviderError(message, code="invalid_input")


# --- requests -----------------------------------------------------------------------------------------

def _asset_file(asset: Any, name: str) -> tuple[str, bytes, str]:
    if not callable(getattr(asset, "read", None)):
        raise ProviderError(f"{name} must be an uploaded image.", code="invalid_input")
    if getattr(asset, "kind", "image") != "image" or asset.mime not in EDITABLE_MIMES:
        raise ProviderError(f"{name} must be a PNG, JPEG or WebP image, not {asset.mime}.", code="invalid_input")
    return (asset.name or f"{name}.png", asset.read(), asset.mime)


def mask_png(mask: AssetInput, size: tuple[int, int] | None) -> tuple[str, bytes, str]:
    """OpenAI repaints where the mask is fully transparent (images.edit `mask` docstring). Studio masks
    are usually black and white with white marking the area to repaint, so those are turned into
    alpha; a mask that already has transparent pixels is used as drawn. Resized to the image with
    nearest-neighbour, since OpenAI requires the same dimensions."""
    _, data, _ = _asset_file(mask, "mask")
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        rgba = img.convert("RGBA")
        # One band: getextrema() is its (min, max).
        if has_alpha and cast(tuple[int, int], rgba.getchannel("A").getextrema())[0] < 255:
            out = rgba
        else:
            grey = img.convert("L")
            out = Image.new("RGBA", grey.size, (0, 0, 0, 255))
            out.putalpha(grey.point(lambda v: 255 - v))
        if size and out.size != size:
            out = out.resize(size, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return ("mask.png", buffer.getvalue(), "image/png")


def _image_params(model: CatalogModel, inputs: dict[str, Any]) -> dict[str, Any]:
    prompt = str(inputs.get("prompt") or "").strip()
    if not prompt:
        raise ProviderError("prompt must not be blank.", code="invalid_input")
    params: dict[str, Any] = {"model": model.provider_model, "prompt": prompt,
                              "n": int(inputs.get("num_images") or 1)}
    for name in ("size", "quality", "output_format", "background"):
        if inputs.get(name):
            params[name] = inputs[name]
    return params


def _image_cost(usage: Any, prices: dict[str, Any]) -> tuple[dict[str, int], Decimal | None]:
    """Token counts from an images response and their cost. `input_tokens_details` splits text and
    image input; output tokens are image tokens (types/images_response.py `Usage`)."""
    if usage is None:
        return {}, None
    details = getattr(usage, "input_tokens_details", None)
    text_in = getattr(details, "text_tokens", None) if details is not None else None
    image_in = getattr(details, "image_tokens", None) if details is not None else None
    if text_in is None:
        text_in, image_in = usage.input_tokens, 0
    counts = {"text_input_tokens": int(text_in or 0), "image_input_tokens": int(image_in or 0),
              "image_output_tokens": int(usage.output_tokens or 0)}
    return counts, tokens_cost(counts, prices)


def _run_image(client: openai.OpenAI, model: CatalogModel, params: dict[str, Any],
               files: dict[str, Any]) -> ProviderStatus:
    if files:
        response = client.images.edit(**params, **files)
    else:
        response = client.images.generate(**params)
    fmt = getattr(response, "output_format", None) or params.get("output_format") or "png"
    mime = IMAGE_MIMES.get(fmt, "image/png")
    outputs = []
    for index, item in enumerate(response.data or []):
        if not item.b64_json:
            raise ProviderError("OpenAI returned an image without data.", code="no_output")
        outputs.append(Output(kind="image", mime=mime, data=base64.b64decode(item.b64_json),
                              filename=f"{model.id.replace('/', '-')}-{index + 1}.{fmt}"))
    usage, cost = _image_cost(response.usage, model.config.get("token_prices", {}))
    return ProviderStatus(state="succeeded", outputs=outputs, usage={**usage, "images": len(outputs)},
                          cost_usd=cost)


def _run_chat(client: openai.OpenAI, model: CatalogModel, system: str, user: str,
              max_tokens: int) -> ProviderStatus:
    messages = cast("list[ChatCompletionMessageParam]", chat_messages(system, user))  # the same dicts, typed
    completion = client.chat.completions.create(model=model.provider_model, messages=messages,
                                                max_completion_tokens=max_tokens)
    usage = completion.usage
    counts = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens} if usage else {}
    cost = tokens_cost(counts, model.config.get("token_prices", {})) if usage else None
    try:
        text = chat_text(completion, "OpenAI")
    except ProviderError as exc:
        return failed_after_billing(exc, usage=counts, cost_usd=cost)
    logs = ["The answer was cut off at the token limit."] if completion.choices[0].finish_reason == "length" else []
    return ProviderStatus(state="succeeded", outputs=[text_output(model, text)], usage=counts, logs=logs,
                          cost_usd=cost)


def _run_speech(client: openai.OpenAI, model: CatalogModel, params: dict[str, Any]) -> ProviderStatus:
    response = client.audio.speech.create(**params)
    audio = response.content
    if not audio:
        raise ProviderError("OpenAI returned no audio.", code="no_output")
    fmt = params.get("response_format", "mp3")
    characters = len(params["input"])
    per_million = model.config.get("usd_per_million_characters")
    cost = Decimal(characters) * Decimal(str(per_million)) / Decimal(1_000_000) if per_million else None
    return ProviderStatus(state="succeeded", usage={"characters": characters}, cost_usd=cost, outputs=[
        Output(kind="audio", mime=AUDIO_MIMES.get(fmt, "audio/mpeg"), data=audio,
               filename=f"{model.id.replace('/', '-')}.{fmt}")])


class OpenAIProvider(SyncAdapterMixin):
    name = "openai"
    label = "OpenAI"
    output_hosts: tuple[str, ...] = ()  # every output arrives as bytes
    registry = ThreadJobRegistry.for_calls("openai")

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob:
        api_key = api_key_for(self.name, credentials, self.label)
        # Inputs are checked and assets read here, in the runner, so bad input fails the submit.
        call = self._prepare(model, inputs)
        timeout = client_timeout(model.config, 300.0)

        def run() -> ProviderStatus:
            try:
                return call(openai_client(self.name, api_key, timeout=timeout))
            except openai.OpenAIError as exc:
                raise sdk_error(exc, self.label) from exc

        request_id = self.registry.start_call(run, description=f"{self.label} {model.provider_model}")
        return ProviderJob(provider=self.name, request_id=request_id, data={"model": model.id})

    def check_credentials(self, credentials: dict[str, str]) -> None:
        """GET /v1/models: authenticated, free, and one request."""
        api_key = api_key_for(self.name, credentials, self.label)
        try:
            openai_client(self.name, api_key, timeout=30.0).models.list()
        except openai.OpenAIError as exc:
            raise sdk_error(exc, self.label) from exc

    def _prepare(self, model: CatalogModel, inputs: dict[str, Any]) -> Any:
        operation = model.operation
        if operation == "text-to-image":
            params = _image_params(model, inputs)
            return lambda client: _run_image(client, model, params, {})
        if operation in ("image-to-image", "inpaint"):
            params = _image_params(model, inputs)
            image = inputs.get("image")
            files: dict[str, Any] = {"image": _asset_file(image, "image")}
            if operation == "inpaint":
                mask = inputs.get("mask")
                if mask is None:
                    raise ProviderError("mask is required.", code="invalid_input")
                size = (image.width, image.height) if image is not None and image.width and image.height else None
                files["mask"] = mask_png(mask, size)
            return lambda client: _run_image(client, model, params, files)
        if operation == "text-generation":
            system, user = text_messages(model, inputs)
            max_tokens = max_tokens_for(model, inputs)
            return lambda client: _run_chat(client, model, system, user, max_tokens)
        if operation == "text-to-speech":
            text = str(inputs.get("text") or "").strip()
            if not text:
                raise ProviderError("text must not be blank.", code="invalid_input")
            params = {"model": model.provider_model, "input": text, "voice": inputs.get("voice") or "alloy",
                      "response_format": model.config.get("response_format", "mp3")}
            if inputs.get("instructions"):
                params["instructions"] = inputs["instructions"]
            if inputs.get("speed"):
                params["speed"] = float(inputs["speed"])
            return lambda client: _run_speech(client, model, params)
        raise ProviderError(f"The OpenAI adapter does not run {operation} models.", code="unknown_model")


__all__ = ["OpenAIProvider", "mask_png", "openai_client", "sdk_error"]
