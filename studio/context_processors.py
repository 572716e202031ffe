from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from billing.services import credits_summary


def credits(request: HttpRequest) -> dict[str, Any]:
    """The signed-in user's credits for the header, read lazily (only templates that show it pay)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"credits": lambda: credits_summary(user=user)}
