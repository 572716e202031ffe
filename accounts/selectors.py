from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from accounts.models import ApiToken, ProviderKey

if TYPE_CHECKING:
    from accounts.models import User


def api_token_list_for_user(user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created")


def provider_key_list_for_user(user: User) -> QuerySet[ProviderKey]:
    """Saved keys without their ciphertext (pages show the last four characters only)."""
    return ProviderKey.objects.filter(user=user).only("provider", "last4", "verified_at", "updated_at").order_by("provider")
