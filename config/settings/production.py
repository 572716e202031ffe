"""Production: DEBUG off, no default for any secret, HTTPS by default.

A missing SECRET_KEY, KEY_ENCRYPTION_KEYS or DATABASE_URL (or STRIPE_WEBHOOK_SECRET once Stripe is on)
stops the start with ImproperlyConfigured naming the variable. `manage.py check --deploy` passes with
the defaults (tests/api/test_hardening.py).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import STRIPE_SECRET_KEY, database_from_url, env_bool, env_int, env_list, env_required

# A debug page in production shows settings and source to anyone; the variable cannot turn it on here.
if env_bool("DEBUG", False):
    raise ImproperlyConfigured("DEBUG=1 with the production settings: use config.settings.dev for development.")
DEBUG = False

SECRET_KEY = env_required("SECRET_KEY", "Django's signing key")
# Users' provider keys are encrypted under these; a key derived from a default would open them all.
KEY_ENCRYPTION_KEYS = env_required("KEY_ENCRYPTION_KEYS", "master keys for users' provider keys; "
                                   "`manage.py generate_master_key` makes one")
DATABASES = {"default": database_from_url(env_required("DATABASE_URL", "e.g. postgres://user:pass@host:5432/studio"))}
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [])
# Hashed file names (cached for ever by browsers) and compressed copies, served by whitenoise.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Stripe is on once its secret key is set; without the webhook secret no purchase would ever be credited.
if STRIPE_SECRET_KEY:
    STRIPE_WEBHOOK_SECRET = env_required("STRIPE_WEBHOOK_SECRET", "Stripe is on (STRIPE_SECRET_KEY is set)")

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
# A proxy that terminates TLS must set X-Forwarded-Proto (and strip it from clients), or every
# request looks like plain HTTP and SECURE_SSL_REDIRECT redirects forever.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HTTPS only, by default: plain HTTP is redirected, and browsers are told (HSTS) to use HTTPS for a
# year. Serving over plain HTTP (docker-compose on localhost) turns both off: SECURE_SSL_REDIRECT=0,
# SECURE_HSTS_SECONDS=0.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading puts the domain in browsers' built-in lists (hstspreload.org): a decision for whoever
# owns the domain, hard to undo, so off unless asked for; with it off, its deploy check is silenced.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
