"""What the text adapters (OpenAI, Anthropic, OpenRouter) share: the key a call uses, a text job's
messages and token budget, the answer as a Markdown Output, a chat completion's answer or the reason
there is none, and token counts priced at the catalog's per-million rates."""

from __future__ import annotations

from decimal import Decimal
from types import ModuleType
from typing import Any

from django.conf import settings

from generations.providers.base import CatalogModel, Output, ProviderError, ProviderStatus

DEFAULT_MAX_TOKENS = 2048


def api_key_for(provider: str, credentials: dict[str, str] | None, label: str) -> str:
    """The user's own key when the runner passed one, else the platform key from settings."""
    key = (credentials or {}).get("api_key") or settings.PROVIDER_KEYS.get(provider, "")
    if not key:
        raise ProviderError(f"No {label} API key is configured for this studio.", code="missing_key")
    return key


def text_messages(model: CatalogModel, inputs: dict[str, Any]) -> tuple[str, str]:
    """(system prompt, user message) for a text job: the catalog's system prompt (prompt enhancement,
    script breakdown) or the user's own instructions, and the user's text through the config's template."""
    config = model.config
    field = config.get("input_field", "prompt")
    text = str(inputs.get(field) or "").strip()
    if not text:
        raise ProviderError(f"{field} must not be blank.", code="invalid_input")
    template = config.get("user_template") or "{text}"
    user = template.format(text=text, **{k: v for k, v in inputs.items() if k != field and isinstance(v, str)})
    system = config.get("system_prompt") or str(inputs.get("instructions") or "").strip()
    return system, user


def chat_messages(system: str, user: str) -> list[dict[str, str]]:
    """OpenAI-style chat messages: the system prompt (when there is one), then the user's turn."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def max_tokens_for(model: CatalogModel, inputs: dict[str, Any]) -> int:
    """The answer's token budget: the user's Max tokens, else the catalog entry's, else 2048."""
    return int(inputs.get("max_tokens") or model.config.get("max_tokens", DEFAULT_MAX_TOKENS))


def text_output(model: CatalogModel, text: str) -> Output:
    extension = model.config.get("output_extension", "md")
    slug = model.id.replace("/", "-")
    return Output(kind="text", mime="text/plain", data=text.encode("utf-8"), filename=f"{slug}.{extension}")


def chat_text(completion: Any, label: str) -> str:
    """The answer of a chat completion, or a ProviderError saying why there is none.

    An empty answer means one of two things. With `finish_reason == "length"` the model spent the whole
    token budget before answering (reasoning models count their hidden reasoning against
    `max_completion_tokens`: https://platform.openai.com/docs/guides/reasoning#allocating-space-for-reasoning),
    which the same request hits again: final, and the user should raise Max tokens. Any other empty
    answer is the "no content generated" case OpenRouter documents as transient, a model warming up
    from a cold start or scaling up (https://openrouter.ai/docs/errors, "When No Content is
    Generated"): retryable, with the runner's backoff and cap."""
    choices = getattr(completion, "choices", None) or []
    if not choices:
        raise no_content(label)
    choice = choices[0]
    message = choice.message
    text = (getattr(message, "content", None) or "").strip()
    refusal = getattr(message, "refusal", None)
    if refusal and not text:
        raise ProviderError(refusal, code="content_policy")
    if choice.finish_reason == "content_filter" and not text:
        raise ProviderError(f"{label} withheld the answer under its content policy.", code="content_policy")
    if not text and choice.finish_reason == "length":
        raise ProviderError(f"{label} used the whole token budget without answering; raise Max tokens.",
                            code="invalid_input")
    if not text:
        raise no_content(label)
    return text


def no_content(label: str) -> ProviderError:
    return ProviderError(f"{label} generated no content; models do this while warming up from a cold start "
                         "or scaling up, so the job is tried again.", code="no_content", retryable=True)


def failed_after_billing(exc: ProviderError, *, usage: dict[str, Any], cost_usd: Decimal | None) -> ProviderStatus:
    """A completion that came back without an answer still cost its tokens (OpenRouter: "you may still
    be charged for the prompt processing cost by the upstream provider, even if no content is
    generated"), so the failed status carries the usage and cost for the runner to record."""
    return ProviderStatus(state="failed", error_code=exc.code, error_message=exc.message,
                          retryable=exc.retryable, usage=dict(usage), cost_usd=cost_usd)


def sdk_call_error(exc: Exception, label: str, sdk: ModuleType) -> ProviderError | None:
    """What the Stainless-built SDKs (`openai`, `anthropic`: the same exception classes) raise when no HTTP
    answer came back: a timeout or a lost connection (retryable) or anything else that is not an HTTP
    status (final). None for an HTTP error status, which each adapter maps from its provider's body."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(f"{label} did not answer in time.", code="timeout", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError(f"Could not reach {label}: {exc}", code="connection_error", retryable=True)
    if not isinstance(exc, sdk.APIStatusError):
        return ProviderError(f"{label} call failed: {exc}", code="provider_error")
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


__all__ = ["api_key_for", "chat_messages", "chat_text", "failed_after_billing", "max_tokens_for", "no_content",
           "sdk_call_error", "text_messages", "text_output", "tokens_cost"]
