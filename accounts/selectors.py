from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import ApiToken


def api_token_list_for_user(user: Any) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created")
