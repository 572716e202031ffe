from __future__ import annotations

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from knox.models import AbstractAuthToken


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, email: str) -> User:
        return self.get(email__iexact=email)


class User(AbstractUser):
    """Email is the login. No username at all, from the first migration."""

    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()  # type: ignore[misc]

    class Meta:
        constraints = [
            # Two accounts must not differ only by letter case: login is case-insensitive.
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.email


class ApiToken(AbstractAuthToken):
    """A personal API token. Only a SHA-512 digest is stored (django-rest-knox); the token is shown once."""

    name = models.CharField(max_length=100)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.token_key}…)"


class ProviderKey(models.Model):
    """A user's own key for one provider, sealed with AES-256-GCM (accounts.crypto). Never returned
    or logged in full: only `last4` is shown."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="provider_keys")
    provider = models.CharField(max_length=40)
    key_id = models.CharField(max_length=40)  # which master key sealed it (rotation)
    nonce = models.BinaryField(max_length=12)
    ciphertext = models.BinaryField()
    last4 = models.CharField(max_length=4)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "provider"], name="accounts_one_key_per_provider"),
        ]
        indexes = [
            # rotate_provider_keys: rows still sealed under an old master key.
            models.Index(fields=["key_id"], name="accounts_providerkey_key_id"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} key …{self.last4} of {self.user}"
