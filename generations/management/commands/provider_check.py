from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import ProviderKey
from accounts.services import provider_key_reveal
from generations.providers.base import ProviderError
from generations.providers.registry import PROVIDERS, get_provider

KEY_ENV = {"fal": "FAL_KEY", "replicate": "REPLICATE_API_TOKEN", "google": "GEMINI_API_KEY",
           "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "openrouter": "OPENROUTER_API_KEY"}


class Command(BaseCommand):
    help = ("Make one cheap authenticated call to a provider with the platform key from the environment "
            "(or a user's saved key with --user) and say whether it works.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("provider", choices=sorted(name for name in PROVIDERS if name != "local"))
        parser.add_argument("--user", help="Check this user's own saved key instead of the platform key.")

    def handle(self, *args: Any, provider: str, user: str | None, **options: Any) -> None:
        if user:
            row = ProviderKey.objects.filter(user__email__iexact=user, provider=provider).first()
            if row is None:
                raise CommandError(f"{user} has no {provider} key saved.")
            key, source = provider_key_reveal(row=row), f"{user}'s key …{row.last4}"
        else:
            key = settings.PROVIDER_KEYS.get(provider, "")
            if not key:
                raise CommandError(f"No platform key for {provider}: set {KEY_ENV[provider]} in the environment "
                                   "(or pass --user to check a user's saved key). Nothing was called.")
            source = f"the platform key …{key[-4:]}"
        started = time.monotonic()
        try:
            get_provider(provider).check_credentials({"api_key": key})
        except ProviderError as exc:
            raise CommandError(f"{provider} refused {source}: {exc.message} ({exc.code})") from exc
        elapsed = (time.monotonic() - started) * 1000
        self.stdout.write(self.style.SUCCESS(f"{provider}: {source} works ({elapsed:.0f} ms)."))
