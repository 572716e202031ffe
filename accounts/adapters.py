from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):  # type: ignore[no-untyped-def]
        """Web sign-ups get their wallet and starter credits through the same ledger service."""
        from billing.services import credits_grant

        user = super().save_user(request, user, form, commit=commit)
        if commit and settings.STARTER_CREDITS > 0:
            credits_grant(user=user, amount=settings.STARTER_CREDITS, reason="Starter credits",
                          idempotency_key=f"starter:{user.pk}")
        return user
