"""Production hardening: a locked-out sign-in is a 429, and production settings pass check --deploy."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from config.settings.base import BASE_DIR

pytestmark = pytest.mark.django_db


def test_a_sign_in_locked_out_after_repeated_failures_answers_429_with_the_branded_page(owner: Any) -> None:
    client = Client()
    # ACCOUNT_RATE_LIMITS["login_failed"] allows 5 failures per address in 5 minutes.
    for _ in range(5):
        failed = client.post("/accounts/login/", {"login": owner.email, "password": "wrong guess"})
        assert failed.status_code == 200
    locked = client.post("/accounts/login/", {"login": owner.email, "password": "wrong guess"})
    assert locked.status_code == 429
    assert "Too many attempts" in locked.content.decode()
    assert locked.templates[0].name == "429.html"
    # Locked means locked: the right password waits too, and no session is opened.
    right = client.post("/accounts/login/", {"login": owner.email, "password": "correct horse battery"})
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


def test_production_settings_pass_check_deploy_without_warnings(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECURE_SSL_REDIRECT",
                          "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"}}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DEBUG": "False",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'studio.sqlite3'}",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "KEY_ENCRYPTION_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "ALLOWED_HOSTS": "studio.example.com",
        "STUDIO_VAR_DIR": str(tmp_path),
    })
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
