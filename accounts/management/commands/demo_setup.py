from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import ApiToken, User
from accounts.services import api_token_create, user_create
from billing.services import credits_summary
from projects.selectors import project_list_for_user
from projects.services import project_create

DEMO_EMAIL = "demo@studio.local"
TOKEN_NAME = "make run"


class Command(BaseCommand):
    help = "Create (or reuse) the demo account with starter credits and a project, and print how to sign in."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", default=os.environ.get("DEMO_EMAIL", DEMO_EMAIL))
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="where `make run` serves the studio")

    def handle(self, *args: Any, email: str, url: str, **options: Any) -> None:
        password_file = settings.VAR_DIR / "demo-password.txt"
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = user_create(email=email, password=password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password)
            password_file.chmod(0o600)
        else:
            password = password_file.read_text().strip() if password_file.exists() else "(unchanged; see var/demo-password.txt)"
        if not project_list_for_user(user).exists():
            project_create(owner=user, name="My first project", description="Made by `make run`.")
        # One demo token at a time: each start replaces the one the previous start printed.
        ApiToken.objects.filter(user=user, name=TOKEN_NAME).delete()
        _, token = api_token_create(user=user, name=TOKEN_NAME)
        credits = credits_summary(user=user)
        url = url.rstrip("/")
        self.stdout.write(self.style.SUCCESS(f"\nThe studio is starting on {url}/"))
        self.stdout.write(f"  Demo account  {email}")
        self.stdout.write(f"  Password      {password}")
        self.stdout.write(f"  Credits       {credits.available} available")
        self.stdout.write(f"  API token     {token}")
        self.stdout.write(f"  Try it        curl -H 'Authorization: Bearer {token}' {url}/api/v1/me\n")
