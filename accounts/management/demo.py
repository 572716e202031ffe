"""The demo account that `make run` creates and prints: an email, a password, a project and an API token.

Both secrets are kept in files only the local user can read (mode 0600 under STUDIO_VAR_DIR), because
the database stores only their hashes: the password under Django's hasher, the token as knox's SHA-512
digest. A start reuses the token in `demo-token` while its digest still matches a live token of the
demo account, so a token pasted into a script or a shell profile keeps working across restarts; a new
one is made (and the file rewritten) only when that token was revoked or the file is missing.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from accounts.models import ApiToken, User
from accounts.services import api_token_create
from billing.services import credits_summary
from billing.signup import user_create
from projects.selectors import project_list_for_user
from projects.services import project_create

DEMO_EMAIL = "demo@studio.local"
TOKEN_NAME = "make run"


@dataclass(frozen=True)
class DemoCredentials:
    email: str
    password: str
    token: str
    credits: int
    token_is_new: bool


def _secret_path(name: str) -> Path:
    return Path(settings.VAR_DIR) / name


def _write_secret(path: Path, value: str) -> None:
    """Write `value` readable by this user only: the file is created 0600 (never world-readable,
    not even for a moment) and replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    os.replace(partial, path)


def _read_secret(path: Path) -> str:
    """The secret kept in `path`, its mode put back to 0600 if something widened it (a copy, an edit
    under another umask): a kept file is reused and printed, so it must stay this user's only."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return ""
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return value


def _live_token(user: User, token: str) -> bool:
    """Whether `token` authenticates as `user` now, by knox's own check (key prefix, digest, expiry)."""
    try:
        found, _ = KnoxTokenAuthentication().authenticate_credentials(token.encode())
    except AuthenticationFailed:
        return False
    return found.pk == user.pk


@transaction.atomic
def demo_account_ensure(*, email: str = DEMO_EMAIL) -> DemoCredentials:
    password_file, token_file = _secret_path("demo-password.txt"), _secret_path("demo-token")
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        password = secrets.token_urlsafe(12)
        user = user_create(email=email, password=password)
        _write_secret(password_file, password)
    else:
        password = _read_secret(password_file) or f"(unchanged; not in {password_file})"
    if not project_list_for_user(user).exists():
        project_create(owner=user, name="My first project", description="Made by `make run`.")
    token = _read_secret(token_file)
    token_is_new = not _live_token(user, token)
    if token_is_new:
        # The file's token was revoked (or never written): replace the earlier `make run` tokens,
        # whose plaintext nobody holds any more, with one new token.
        ApiToken.objects.filter(user=user, name=TOKEN_NAME).delete()
        _, token = api_token_create(user=user, name=TOKEN_NAME)
        _write_secret(token_file, token)
    return DemoCredentials(email=email, password=password, token=token,
                           credits=credits_summary(user=user).available, token_is_new=token_is_new)


def credentials_lines(credentials: DemoCredentials, *, url: str) -> list[str]:
    url = url.rstrip("/")
    return [
        f"  Demo account  {credentials.email}",
        f"  Password      {credentials.password}",
        f"  Credits       {credentials.credits} available",
        f"  API token     {credentials.token}",
        f"  Try it        curl -H 'Authorization: Bearer {credentials.token}' {url}/api/v1/me",
    ]
