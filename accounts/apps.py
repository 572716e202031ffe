from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate


def site_sync_from_settings(*, using: str = "default", **kwargs: Any) -> None:
    """Make the Site row (django.contrib.sites; allauth's emails name it) say SITE_NAME at SITE_URL's
    host instead of Django's "example.com". Run after every migrate, so a changed SITE_URL takes
    effect at the next deploy; the sites app's own post_migrate handler, which runs first (it is listed
    first in INSTALLED_APPS), creates the row on a new database."""
    from django.contrib.sites.models import Site  # models cannot be imported while apps.py itself loads

    domain = urlsplit(settings.SITE_URL).netloc or settings.SITE_URL
    Site.objects.using(using).update_or_create(pk=settings.SITE_ID, defaults={"domain": domain[:100],
                                                                              "name": settings.SITE_NAME[:50]})
    Site.objects.clear_cache()


class AccountsConfig(AppConfig):
    name = "accounts"
    # allauth's `account` app (email addresses) is also called "Accounts" in the admin; two sections
    # of the same name on the admin index made moderators guess which one holds the users.
    verbose_name = "Users and API tokens"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import schema  # noqa: F401  (registers the OpenAPI auth extension)

        post_migrate.connect(site_sync_from_settings, sender=self, dispatch_uid="accounts.site_sync_from_settings")
