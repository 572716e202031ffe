from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.models import ApiToken, User


@transaction.atomic
def user_create(*, email: str, password: str | None, starter_credits: int | None = None) -> User:
    """Create an account and its wallet with the starter credits (granted once, idempotently)."""
    from billing.services import credits_grant

    user = User.objects.create_user(email=email, password=password)
    amount = settings.STARTER_CREDITS if starter_credits is None else starter_credits
    if amount > 0:
        credits_grant(user=user, amount=amount, reason="Starter credits",
                      idempotency_key=f"starter:{user.pk}")
    return user


def api_token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """Return the token row and the token itself, which is never stored and never shown again."""
    name = name.strip() or "API token"
    return ApiToken.objects.create(user=user, name=name[:100])


def api_token_revoke(*, user: User, token_key: str) -> bool:
    deleted, _ = ApiToken.objects.filter(user=user, token_key=token_key).delete()
    return deleted > 0
