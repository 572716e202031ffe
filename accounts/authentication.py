"""`Authorization: Bearer <token>` for personal API tokens, on django-rest-knox's hashed tokens."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from knox.auth import TokenAuthentication

from accounts.models import ApiToken, User

# Writing last_used_at on every request would turn every API read into a write; a minute is precise
# enough for "last used" on the account page.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class BearerTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, token: bytes) -> tuple[User, ApiToken]:
        user, auth_token = super().authenticate_credentials(token)
        now = timezone.now()
        if auth_token.last_used_at is None or now - auth_token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=auth_token.pk).update(last_used_at=now)
        return user, auth_token
