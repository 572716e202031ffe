"""Users' provider keys as jobs see them: saving one (checked with its provider first), and which key
a job runs on: the user's own key for that provider, else the platform's, else none (and then the model
is shown as unavailable, with the reason). The sealed store itself is accounts' (`accounts.services`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings

from accounts.models import ProviderKey, User
from accounts.services import provider_key_reveal, provider_key_store
from core.errors import InvalidRequest
from generations.providers.base import ProviderError
from generations.providers.registry import PROVIDERS, get_provider

KeySource = Literal["user", "platform", "none"]

PROVIDER_LABELS = {"fal": "fal.ai", "replicate": "Replicate", "google": "Google Gen AI", "openai": "OpenAI",
                   "anthropic": "Anthropic", "openrouter": "OpenRouter"}


def remote_providers() -> list[str]:
    return [name for name in PROVIDERS if name != "local"]


def provider_key_save(*, user: User, provider: str, api_key: str, verify: bool = True) -> ProviderKey:
    """Check the key with one cheap authenticated call to the provider, then store it sealed.
    A key the provider rejects is not stored; the error says what the provider said."""
    api_key = api_key.strip()
    if provider not in remote_providers():
        raise InvalidRequest(f"Unknown provider {provider!r}.", fields={"provider": ["Unknown provider."]})
    if len(api_key) < 8 or any(c.isspace() for c in api_key):
        raise InvalidRequest("That does not look like an API key.", fields={"api_key": ["That does not look like an API key."]})
    label = PROVIDER_LABELS.get(provider, provider)
    if verify:
        adapter = get_provider(provider)
        try:
            adapter.check_credentials({"api_key": api_key})
        except ProviderError as exc:
            if exc.retryable:
                raise InvalidRequest(f"{label} could not be reached to check the key ({exc.message}); try again.",
                                     code="provider_unreachable", fields={"api_key": [exc.message]})
            raise InvalidRequest(f"{label} rejected this key: {exc.message}", code="invalid_key",
                                 fields={"api_key": [f"{label} rejected this key: {exc.message}"]})
    return provider_key_store(user=user, provider=provider, api_key=api_key, verified=verify)


@dataclass(frozen=True)
class Availability:
    available: bool
    key_source: KeySource
    reason: str = ""


def availability_for(user: Any, providers: set[str]) -> dict[str, Availability]:
    """For a list of models: one query for the user's keys, no decryption."""
    own = set(ProviderKey.objects.filter(user=user, provider__in=providers).values_list("provider", flat=True)) \
        if getattr(user, "is_authenticated", False) else set()
    result: dict[str, Availability] = {}
    for provider in providers:
        if provider == "local":
            result[provider] = Availability(True, "none")
        elif provider in own:
            result[provider] = Availability(True, "user")
        elif settings.PROVIDER_KEYS.get(provider):
            result[provider] = Availability(True, "platform")
        else:
            label = PROVIDER_LABELS.get(provider, provider)
            result[provider] = Availability(False, "none", f"No {label} key is set up: add your own {label} key "
                                                           "on the account page to use this model.")
    return result


def credentials_for(user: Any, provider: str, *, source: KeySource) -> dict[str, str] | None:
    """The credentials a job passes to its provider, from the source chosen when it was submitted (its
    hold was priced for that source: a job submitted on the user's key must not quietly run on the
    platform's). None when that key is gone. For the worker only: the key is in plain text."""
    if source == "user":
        row = ProviderKey.objects.filter(user=user, provider=provider).first()
        return {"api_key": provider_key_reveal(row=row)} if row is not None else None
    if source == "platform":
        platform = settings.PROVIDER_KEYS.get(provider, "")
        return {"api_key": platform} if platform else None
    return None
