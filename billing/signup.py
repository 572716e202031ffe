"""Sign-ups: an account with its wallet and starter credits, for every way an account is made (the web
sign-up through allauth's adapter, the demo account, tests and benchmarks). It lives in billing rather
than accounts because accounts sits below billing (docs/ARCHITECTURE.md, "Layers")."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.models import User
from billing.services import credits_grant


def starter_credits_grant(*, user: User, amount: int | None = None) -> None:
    """Grant the starter credits (STARTER_CREDITS unless `amount` says otherwise) once: the posting is
    keyed by the user, so a second call changes nothing."""
    amount = settings.STARTER_CREDITS if amount is None else amount
    if amount > 0:
        credits_grant(user=user, amount=amount, reason="Starter credits", idempotency_key=f"starter:{user.pk}")


@transaction.atomic
def user_create(*, email: str, password: str | None, starter_credits: int | None = None) -> User:
    """Create an account and its wallet with the starter credits (granted once, idempotently)."""
    user = User.objects.create_user(email=email, password=password)
    starter_credits_grant(user=user, amount=starter_credits)
    return user
