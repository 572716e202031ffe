from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.crypto import keyring
from accounts.services import provider_keys_rotate


class Command(BaseCommand):
    help = ("Re-encrypt every stored provider key under the current master key (the first in "
            "KEY_ENCRYPTION_KEYS). Put the new key first, keep the old one after it, run this, then "
            "remove the old key.")

    def handle(self, *args: Any, **options: Any) -> None:
        current, _ = keyring()
        count = provider_keys_rotate()
        self.stdout.write(f"Re-encrypted {count} provider key(s) under master key {current!r}.")
