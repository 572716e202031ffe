"""Development: the embedded defaults, so a fresh clone runs with no environment at all.

SQLite under var/, local media files, the filesystem broker and the offline `local` provider (all from
base.py unless the environment names a server), DEBUG on, a development secret key. Every variable in
README.md's "Configuration" still overrides its default here.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import VAR_DIR, database_from_url, env_bool, env_list

# DEBUG=0 used to switch these settings to production's; now that is a settings module of its own, and
# a DEBUG=0 left in an environment that still names this one must not quietly run on the dev key.
if not env_bool("DEBUG", True):
    raise ImproperlyConfigured(
        "DEBUG=0 with the development settings: set DJANGO_SETTINGS_MODULE=config.settings.production.")
DEBUG = True

SECRET_KEY = os.environ.get("SECRET_KEY") or "insecure-development-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])

DATABASES = {
    "default": database_from_url(os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'studio.sqlite3'}")),
}
