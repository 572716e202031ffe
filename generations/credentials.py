"""Which key a job runs on: the user's own key for that provider, else the platform's, else none
(and then the model is shown as unavailable, with the reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings

from accounts.models import ProviderKey
from accounts.services import PROVIDER_LABELS

KeySource = Literal["user", "platform", "none"]


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
    from accounts.services import provider_key_reveal

    if source == "user":
        row = ProviderKey.objects.filter(user=user, provider=provider).first()
        return {"api_key": provider_key_reveal(row=row)} if row is not None else None
    if source == "platform":
        platform = settings.PROVIDER_KEYS.get(provider, "")
        return {"api_key": platform} if platform else None
    return None
