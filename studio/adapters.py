"""allauth's hooks for the web app's sign-in and sign-up pages (ACCOUNT_ADAPTER)."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.core.ratelimit import respond_429
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from billing.signup import starter_credits_grant


class AccountAdapter(DefaultAccountAdapter):
    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        """A sign-in locked out by ACCOUNT_RATE_LIMITS["login_failed"] answers 429 (templates/429.html)
        rather than allauth's form error with status 200, so clients and monitoring see a lockout."""
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError as exc:
            if exc.code == "too_many_login_attempts":
                raise ImmediateHttpResponse(respond_429(request)) from exc
            raise

    def save_user(self, request, user, form, commit=True):  # type: ignore[no-untyped-def]
        """Web sign-ups get their wallet and starter credits through the same ledger service."""
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            starter_credits_grant(user=user)
        return user
