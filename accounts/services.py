"""Accounts' writes: API tokens and the sealed store of users' own provider keys. Making an account
with its wallet is `billing.signup.user_create`; checking a key with its provider before it is stored is
`generations.credentials.provider_key_save` (both sit above accounts, docs/ARCHITECTURE.md, "Layers")."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.crypto import Sealed, keyring, open_sealed, seal
from accounts.models import ApiToken, ProviderKey, User


def api_token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """Return the token row and the token itself, which is never stored and never shown again."""
    name = name.strip() or "API token"
    return ApiToken.objects.create(user=user, name=name[:100])


def api_token_revoke(*, user: User, token_key: str) -> bool:
    deleted, _ = ApiToken.objects.filter(user=user, token_key=token_key).delete()
    return deleted > 0


# --- users' own provider keys ------------------------------------------------------------------------

def provider_key_store(*, user: User, provider: str, api_key: str, verified: bool) -> ProviderKey:
    """Seal `api_key` for this user and provider and store it (replacing any key saved before). Only
    `generations.credentials.provider_key_save` calls this, after checking the key with the provider."""
    sealed = seal(api_key, user_id=user.pk, provider=provider)
    row, _ = ProviderKey.objects.update_or_create(
        user=user, provider=provider,
        defaults={"key_id": sealed.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext,
                  "last4": api_key[-4:], "verified_at": timezone.now() if verified else None},
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
