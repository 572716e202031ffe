from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.crypto import Sealed, keyring, open_sealed, seal
from accounts.models import ApiToken, ProviderKey, User
from core.errors import InvalidRequest


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


# --- users' own provider keys ------------------------------------------------------------------------

PROVIDER_LABELS = {"fal": "fal.ai", "replicate": "Replicate", "google": "Google Gen AI", "openai": "OpenAI",
                   "anthropic": "Anthropic", "openrouter": "OpenRouter"}


def remote_providers() -> list[str]:
    from generations.providers.registry import PROVIDERS

    return [name for name in PROVIDERS if name != "local"]


def provider_key_save(*, user: User, provider: str, api_key: str, verify: bool = True) -> ProviderKey:
    """Check the key with one cheap authenticated call to the provider, then store it sealed.
    A key the provider rejects is not stored; the error says what the provider said."""
    from generations.providers.base import ProviderError
    from generations.providers.registry import get_provider

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
    sealed = seal(api_key, user_id=user.pk, provider=provider)
    row, _ = ProviderKey.objects.update_or_create(
        user=user, provider=provider,
        defaults={"key_id": sealed.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext,
                  "last4": api_key[-4:], "verified_at": timezone.now() if verify else None},
    )
    return row


def provider_key_delete(*, user: User, provider: str) -> bool:
    deleted, _ = ProviderKey.objects.filter(user=user, provider=provider).delete()
    return deleted > 0


def provider_key_reveal(*, row: ProviderKey) -> str:
    """The plaintext key, for the worker's provider call only. Never log or return it."""
    return open_sealed(Sealed(key_id=row.key_id, nonce=bytes(row.nonce), ciphertext=bytes(row.ciphertext)),
                       user_id=row.user_id, provider=row.provider)


def provider_keys_rotate(*, batch_size: int = 500) -> int:
    """Re-seal every key not sealed under the current master key. Each row is re-read under a row
    lock, so a key saved meanwhile is not overwritten with an older value."""
    current, _ = keyring()
    done = 0
    while True:
        ids = list(ProviderKey.objects.exclude(key_id=current).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return done
        for pk in ids:
            with transaction.atomic():
                row = ProviderKey.objects.select_for_update().filter(pk=pk).exclude(key_id=current).first()
                if row is None:
                    continue
                sealed = seal(provider_key_reveal(row=row), user_id=row.user_id, provider=row.provider)
                ProviderKey.objects.filter(pk=pk).update(key_id=sealed.key_id, nonce=sealed.nonce,
                                                         ciphertext=sealed.ciphertext)
                done += 1
