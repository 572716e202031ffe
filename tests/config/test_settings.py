"""Settings per environment: production refuses to start without its secrets, naming the variable;
development starts with no environment at all; neither runs with the other's DEBUG.

Each module's file is executed afresh (runpy) under a patched environment, in this process: base.py
stays the one the suite loaded, and what these tests cover is read by dev.py and production.py themselves.
"""

from __future__ import annotations

import base64
import runpy
import secrets
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

import config.settings.base

SETTINGS_DIR = Path(config.settings.base.__file__).parent


def load(name: str) -> dict[str, Any]:
    return runpy.run_path(str(SETTINGS_DIR / f"{name}.py"))

PRODUCTION_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "KEY_ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "DATABASE_URL": "postgres://studio:secret@db.example.com:5432/studio",
}


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("DEBUG", "STRIPE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_production_settings_load_with_their_secrets_and_debug_off(production_env: pytest.MonkeyPatch) -> None:
    settings = load("production")
    assert settings["DEBUG"] is False
    assert settings["SECRET_KEY"] == PRODUCTION_ENV["SECRET_KEY"]
    assert settings["DATABASES"]["default"]["HOST"] == "db.example.com"
    assert settings["SESSION_COOKIE_SECURE"] and settings["CSRF_COOKIE_SECURE"] and settings["SECURE_SSL_REDIRECT"]
    assert settings["STORAGES"]["staticfiles"]["BACKEND"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"


@pytest.mark.parametrize("missing", ["SECRET_KEY", "KEY_ENCRYPTION_KEYS", "DATABASE_URL"])
def test_production_settings_refuse_to_start_without_a_secret_and_name_it(
        production_env: pytest.MonkeyPatch, missing: str) -> None:
    production_env.delenv(missing)
    with pytest.raises(ImproperlyConfigured, match=f"^{missing} must be set in production"):
        load("production")


def test_production_settings_with_stripe_on_need_its_webhook_secret(production_env: pytest.MonkeyPatch) -> None:
    production_env.setattr(config.settings.base, "STRIPE_SECRET_KEY", "sk_test_123")
    with pytest.raises(ImproperlyConfigured, match="^STRIPE_WEBHOOK_SECRET must be set in production"):
        load("production")
    production_env.setenv("STRIPE_WEBHOOK_SECRET", "whsec_123")
    assert load("production")["STRIPE_WEBHOOK_SECRET"] == "whsec_123"


def test_production_settings_refuse_debug_on(production_env: pytest.MonkeyPatch) -> None:
    production_env.setenv("DEBUG", "1")
    with pytest.raises(ImproperlyConfigured, match="config.settings.dev"):
        load("production")


def test_development_settings_need_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEBUG", "SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    settings = load("dev")
    assert settings["DEBUG"] is True
    assert settings["SECRET_KEY"]
    assert settings["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert settings["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "testserver"]


def test_development_settings_with_debug_off_point_at_production(monkeypatch: pytest.MonkeyPatch) -> None:
    # DEBUG=0 used to mean production; under the dev module it must not run on the development key.
    monkeypatch.setenv("DEBUG", "0")
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SETTINGS_MODULE=config.settings.production"):
        load("dev")
