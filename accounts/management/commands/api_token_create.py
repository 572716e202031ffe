from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from accounts.services import api_token_create


class Command(BaseCommand):
    help = "Create a personal API token for a user and print it (it is shown only once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--user", required=True, help="The user's email.")
        parser.add_argument("--name", default="CLI", help="A name to recognise the token by.")

    def handle(self, *args: Any, user: str, name: str, **options: Any) -> None:
        account = User.objects.filter(email__iexact=user).first()
        if account is None:
            raise CommandError(f"No user with email {user!r}.")
        _, token = api_token_create(user=account, name=name)
        self.stdout.write(token)
