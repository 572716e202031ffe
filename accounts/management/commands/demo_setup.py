from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand

from accounts.management.demo import DEMO_EMAIL, credentials_lines, demo_account_ensure


class Command(BaseCommand):
    help = ("Create (or reuse) the demo account with starter credits, a project and an API token, and print "
            "how to sign in. The token is kept in var/demo-token (mode 0600) and reused while it is live.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", default=os.environ.get("DEMO_EMAIL", DEMO_EMAIL))
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="where `make run` serves the studio")

    def handle(self, *args: Any, email: str, url: str, **options: Any) -> None:
        credentials = demo_account_ensure(email=email)
        self.stdout.write(self.style.SUCCESS(f"\nThe studio is on {url.rstrip('/')}/"))
        for line in credentials_lines(credentials, url=url):
            self.stdout.write(line)
        self.stdout.write("")
