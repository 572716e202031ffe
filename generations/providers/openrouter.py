"""The OpenRouter adapter: chat completions from many model vendors through OpenRouter's
OpenAI-compatible API, called with the official `openai` SDK pointed at
settings.PROVIDER_BASE_URLS["openrouter"] (default https://openrouter.ai/api/v1).

Synchronous like OpenAI's chat API, so the call runs on a worker thread behind submit/poll
(generations.providers.jobs).

- Cost is OpenRouter's own: every response carries `usage.cost` in credits (= USD)
  (https://openrouter.ai/docs/use-cases/usage-accounting). The SDK keeps unknown fields, so it is read
  from `usage.model_extra`. Without it the pipeline charges the price card.
- Errors (https://openrouter.ai/docs/api/errors): `{"error": {"code", "message", "metadata"}}` with the
  HTTP status equal to `code` for invalid requests and missing credits; errors after the upstream
  model started arrive as **HTTP 200** with that `error` object in the body (or a choice with
  `finish_reason: "error"`), which the SDK does not raise, so they are checked here. 402 (no credits)
  is final; 403 is a moderation block; 408, 429, 502 (model down) and 503 (no provider) are retryable.
- "No content generated" (https://openrouter.ai/docs/errors, "When No Content is Generated"): a 200
  whose answer is empty while the model warms up from a cold start or the provider scales up. It is a
  retryable `no_content` failure carrying the reported `usage.cost`, since the prompt may still be
  billed. Only an empty answer with `finish_reason: "length"` (the token budget ran out) is final,
  with the advice to raise Max tokens (text.chat_text).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import openai
from django.conf import settings

from generations.providers.base import CatalogModel, ProviderError, ProviderJob, ProviderStatus
from generations.providers.http import client_timeout
from generations.providers.jobs import SyncAdapterMixin, ThreadJobRegistry
from generations.providers.openai import openai_client, sdk_error
from generations.providers.text import (
    api_key_for,
    chat_messages,
    chat_text,
    failed_after_billing,
    max_tokens_for,
    text_messages,
    text_output,
    tokens_cost,
)

LABEL = "OpenRouter"


def _client(api_key: str, timeout: float) -> openai.OpenAI:
    # Optional attribution headers (openrouter.ai/docs/api-reference/overview#headers).
    return openai_client("openrouter", api_key, timeout=timeout,
                         default_headers={"HTTP-Referer": settings.SITE_URL, "X-Title": "AI media studio"})


def error_from_code(code: Any, message: str, metadata: Any = None) -> ProviderError:
    """An OpenRouter `error` object (from an HTTP error or a 200 body) as a ProviderError."""
    try:
        status = int(code)
    except (TypeError, ValueError):
        status = 500 if code in (None, "") else 400
    message = message or f"{LABEL} reported error {code}."
    if status in (408, 429) or status >= 500:
        return ProviderError(message, code="rate_limited" if status == 429 else "provider_unavailable",
                             retryable=True)
    if status == 402:
        return ProviderError(message, code="quota_exceeded")
    if status == 403:
        reasons = metadata.get("reasons") if isinstance(metadata, dict) else None
        detail = f" ({', '.join(map(str, reasons))})" if reasons else ""
        return ProviderError(f"{message}{detail}", code="content_policy")
    if status == 401:
        return ProviderError(message, code="invalid_key")
    return ProviderError(message, code="invalid_input")


def status_error(exc: openai.OpenAIError) -> ProviderError:
    if isinstance(exc, openai.APIStatusError) and exc.status_code in (402, 403):
        # The SDK hands over the body's `error` object already unwrapped (`_client._make_status_error`).
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body)
        error = error if isinstance(error, dict) else {}
        return error_from_code(exc.status_code, str(error.get("message") or ""), error.get("metadata"))
    return sdk_error(exc, LABEL)


def _extra(obj: Any, name: str) -> Any:
    """A field the SDK's types do not declare (OpenRouter's additions) or one they do."""
    extra = getattr(obj, "model_extra", None) or {}
    if name in extra:
        return extra[name]
    return getattr(obj, name, None)


def reported_cost(usage: Any) -> Decimal | None:
    cost = _extra(usage, "cost") if usage is not None else None
    if cost is None:
        return None
    try:
        return Decimal(str(cost))
    except InvalidOperation:
        return None


def _run_chat(client: openai.OpenAI, model: CatalogModel, params: dict[str, Any]) -> ProviderStatus:
    completion = client.chat.completions.create(**params)
    error = _extra(completion, "error")
    if isinstance(error, dict):
        raise error_from_code(error.get("code"), str(error.get("message") or ""), error.get("metadata"))
    choices = getattr(completion, "choices", None) or []
    if choices and choices[0].finish_reason == "error":
        choice_error = _extra(choices[0], "error") or {}
        raise error_from_code(choice_error.get("code"), str(choice_error.get("message") or ""))
    usage = completion.usage
    counts = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens} if usage else {}
    cost = reported_cost(usage)
    if cost is None and usage is not None:
        cost = tokens_cost(counts, model.config.get("token_prices", {}))
    try:
        text = chat_text(completion, LABEL)
    except ProviderError as exc:
        # "No content generated" is retried, and its `usage.cost` (the prompt may still be billed
        # upstream: openrouter.ai/docs/errors) goes to the runner with the failure.
        return failed_after_billing(exc, usage=counts, cost_usd=cost)
    logs = []
    upstream = _extra(completion, "provider")
    if upstream:
        logs.append(f"Served by {upstream} for {model.provider_model}.")
    if choices[0].finish_reason == "length":
        logs.append("The answer was cut off at the token limit.")
    return ProviderStatus(state="succeeded", outputs=[text_output(model, text)], usage=counts, cost_usd=cost,
                          logs=logs)


class OpenRouterProvider(SyncAdapterMixin):
    name = "openrouter"
    output_hosts: tuple[str, ...] = ()
    registry = ThreadJobRegistry.for_calls("openrouter")

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob:
        api_key = api_key_for(self.name, credentials, LABEL)
        if model.operation != "text-generation":
            raise ProviderError(f"The OpenRouter adapter does not run {model.operation} models.",
                                code="unknown_model")
        system, user = text_messages(model, inputs)
        params: dict[str, Any] = {"model": model.provider_model, "messages": chat_messages(system, user),
                                  "max_tokens": max_tokens_for(model, inputs)}
        if inputs.get("temperature") is not None:
            params["temperature"] = float(inputs["temperature"])
        timeout = client_timeout(model.config, 180.0)

        def run() -> ProviderStatus:
            try:
                client = _client(api_key, timeout)
                return _run_chat(client, model, params)
            except openai.OpenAIError as exc:
                raise status_error(exc) from exc

        request_id = self.registry.start_call(run, description=f"{LABEL} {model.provider_model}")
        return ProviderJob(provider=self.name, request_id=request_id, data={"model": model.id})

    def check_credentials(self, credentials: dict[str, str]) -> None:
        """GET /api/v1/key through the SDK's generic `get`: it needs a valid key, unlike /models,
        which OpenRouter serves to anyone (openrouter.ai/docs/api/reference/limits)."""
        api_key = api_key_for(self.name, credentials, LABEL)
        try:
            client = _client(api_key, 30.0)
            client.get("/key", cast_to=object)
        except openai.OpenAIError as exc:
            raise status_error(exc) from exc


__all__ = ["OpenRouterProvider", "error_from_code", "reported_cost"]
