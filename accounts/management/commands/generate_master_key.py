from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.crypto import new_master_key


class Command(BaseCommand):
    help = "Print a new random AES-256 master key for KEY_ENCRYPTION_KEYS (as id:base64)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--id", default="k1", help="The key id to print it under.")

    def handle(self, *args: Any, id: str, **options: Any) -> None:
        self.stdout.write(f"{id}:{new_master_key()}")
