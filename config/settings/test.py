"""Settings for the test suite: the development settings with a fast password hasher.

Every persona a test creates has its password hashed; with Django's default PBKDF2 (a million
iterations) that was most of the suite's time. MD5 here is only ever used on throwaway test users.
Worker subprocesses started by the tests inherit DJANGO_SETTINGS_MODULE, so they use these too.
"""

from config.settings.dev import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
