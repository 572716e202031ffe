"""The Anthropic adapter: Claude through the Messages API, with the official `anthropic` SDK (2.12).

The Messages API answers on the same request, so the call runs on a worker thread behind
submit/poll (generations.providers.jobs). Outputs are the answer's text blocks, stored as Markdown.
Thinking blocks (Claude 5.x thinks adaptively by default) are not part of the output; their tokens are
billed as output tokens, which `usage.output_tokens` already includes (types/usage.py).

Cost: `usage` input/output (and cache) tokens × the per-million prices in `config.token_prices`;
Haiku 5.5 bills a whole request at higher rates when its prompt exceeds 100,000 tokens
(`config.long_prompt`).

Errors: `{"type": "error", "error": {"type", "message"}}` (https://docs.anthropic.com/en/api/errors).
429 (honouring `retry-after`), 500 and 529 `overloaded_error` are retryable; 400-413 are final.

`import anthropic` below is the SDK: imports are absolute and this module is only imported as
`generations.providers.anthropic`.
"""

from __future__ import annotations

import ssl
from decimal import Decimal
from functools import lru_cache
from typing import Any

import anthropic
from django.conf import settings

from generations.providers.base import CatalogModel, ProviderError, ProviderJob, ProviderStatus
from generations.providers.http import client_timeout, retry_after_seconds
from generations.providers.jobs import SyncAdapterMixin, ThreadJobRegistry
from generations.providers.text import (
    api_key_for,
    failed_after_billing,
    max_tokens_for,
    sdk_call_error,
    text_messages,
    text_output,
    tokens_cost,
)

LABEL = "Anthropic"


def anthropic_client(api_key: str, *, timeout: float) -> anthropic.Anthropic:
    """One client per key and endpoint in this process (see openai.openai_client for why)."""
    return _cached_client(api_key, timeout, settings.PROVIDER_BASE_URLS.get("anthropic") or None,
                          settings.PROVIDER_CA_BUNDLE)


@lru_cache(maxsize=64)
def _cached_client(api_key: str, timeout: float, base_url: str | None, ca_bundle: str) -> anthropic.Anthropic:
    http_client = None
    if ca_bundle:
        context = ssl.create_default_context(cafile=ca_bundle)
        http_client = anthropic.DefaultHttpxClient(verify=context, timeout=timeout)
    # max_retries=0: the runner retries transient failures itself, with backoff, a cap and Retry-After.
    return anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout,
                               http_client=http_client)


def sdk_error(exc: Exception) -> ProviderError:
    unanswered = sdk_call_error(exc, LABEL, anthropic)
    if unanswered is not None:
        return unanswered
    assert isinstance(exc, anthropic.APIStatusError)  # sdk_call_error answered every other kind
    status = exc.status_code
    message = exc.api_message or f"{LABEL} answered HTTP {status}."
    if status == 429:
        return ProviderError(message, code="rate_limited", retryable=True,
                             retry_after=retry_after_seconds(exc.response.headers))
    if status == 408:
        return ProviderError(message, code="timeout", retryable=True)
    if status >= 500:  # 500 api_error, 529 overloaded_error (SDK OverloadedError)
        return ProviderError(message, code="overloaded" if status == 529 else "provider_unavailable",
                             retryable=True, retry_after=retry_after_seconds(exc.response.headers))
    codes = {401: "invalid_key", 402: "quota_exceeded", 403: "permission_denied", 404: "unknown_model"}
    return ProviderError(message, code=codes.get(status, "invalid_input"))


def message_cost(usage: Any, config: dict[str, Any]) -> tuple[dict[str, int], Decimal | None]:
    counts = {name: int(getattr(usage, name, 0) or 0)
              for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    prices = config.get("token_prices", {})
    long_prompt = config.get("long_prompt")
    if long_prompt:
        prompt = counts["input_tokens"] + counts["cache_creation_input_tokens"] + counts["cache_read_input_tokens"]
        if prompt > int(long_prompt["threshold_tokens"]):
            prices = long_prompt["token_prices"]
    return counts, tokens_cost(counts, prices)


def _run_message(client: anthropic.Anthropic, model: CatalogModel, params: dict[str, Any]) -> ProviderStatus:
    message = client.messages.create(**params)
    text = "\n\n".join(block.text for block in message.content if getattr(block, "type", "") == "text").strip()
    # Every answer without text is still billed for its tokens: the failed status carries their cost.
    counts, cost = message_cost(message.usage, model.config)
    if message.stop_reason == "refusal":
        return failed_after_billing(ProviderError(text or "Claude declined this request under Anthropic's usage "
                                                  "policy.", code="content_policy"), usage=counts, cost_usd=cost)
    if not text and message.stop_reason == "max_tokens":
        return failed_after_billing(ProviderError("Claude used the whole token budget without answering; raise "
                                                  "Max tokens.", code="invalid_input"), usage=counts, cost_usd=cost)
    if not text:
        # An empty end_turn answer comes from the prompt, and Anthropic advises against retrying it
        # unchanged (platform.claude.com/docs/en/build-with-claude/handling-stop-reasons): final.
        return failed_after_billing(ProviderError(f"Claude ended its answer without any text (stop reason "
                                                  f"{message.stop_reason}); rephrase the prompt and try again.",
                                                  code="no_output"), usage=counts, cost_usd=cost)
    logs = ["The answer was cut off at the token limit."] if message.stop_reason == "max_tokens" else []
    return ProviderStatus(state="succeeded", outputs=[text_output(model, text)], usage=counts, cost_usd=cost,
                          logs=logs)


class AnthropicProvider(SyncAdapterMixin):
    name = "anthropic"
    output_hosts: tuple[str, ...] = ()
    registry = ThreadJobRegistry.for_calls("anthropic")

    def submit(self, model: CatalogModel, inputs: dict[str, Any], *, credentials: dict[str, str] | None,
               webhook_url: str | None = None) -> ProviderJob:
        api_key = api_key_for("anthropic", credentials, LABEL)
        if model.operation != "text-generation":
            raise ProviderError(f"The Anthropic adapter does not run {model.operation} models.",
                                code="unknown_model")
        system, user = text_messages(model, inputs)
        params: dict[str, Any] = {
            "model": model.provider_model, "messages": [{"role": "user", "content": user}],
            "max_tokens": max_tokens_for(model, inputs)}
        if system:
            params["system"] = system
        # Sampling parameters are left out on purpose: Claude Sonnet 5 and later answer 400 to a
        # non-default temperature/top_p/top_k (platform.claude.com/docs/en/models/sonnet-5/overview).
        if model.config.get("thinking"):
            params["thinking"] = model.config["thinking"]
        timeout = client_timeout(model.config, 300.0)

        def run() -> ProviderStatus:
            try:
                return _run_message(anthropic_client(api_key, timeout=timeout), model, params)
            except anthropic.AnthropicError as exc:
                raise sdk_error(exc) from exc

        request_id = self.registry.start_call(run, description=f"{LABEL} {model.provider_model}")
        return ProviderJob(provider=self.name, request_id=request_id, data={"model": model.id})

    def check_credentials(self, credentials: dict[str, str]) -> None:
        """GET /v1/models?limit=1: authenticated and free."""
        try:
            anthropic_client(api_key_for("anthropic", credentials, LABEL), timeout=30.0).models.list(limit=1)
        except anthropic.AnthropicError as exc:
            raise sdk_error(exc) from exc


__all__ = ["AnthropicProvider", "message_cost", "sdk_error"]
