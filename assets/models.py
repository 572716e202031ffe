from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class AssetKind(models.TextChoices):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    MESH = "mesh"
    OTHER = "other"


class AssetSource(models.TextChoices):
    UPLOAD = "upload"
    GENERATION = "generation"


def asset_upload_to(instance: Asset, filename: str) -> str:
    # Content-addressed names under the project: unguessable, and a user-supplied name never
    # becomes a path (it is kept in Asset.name for display and downloads).
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"projects/{instance.project_id}/{instance.id.hex[:2]}/{instance.id.hex}.{ext[:8]}"


class Asset(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # owner is the project's owner, copied so the gallery's index can start with it (no join).
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assets")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="assets")
    kind = models.CharField(max_length=10, choices=AssetKind.choices)
    name = models.CharField(max_length=255)
    file = models.FileField(upload_to=asset_upload_to, max_length=255)
    mime = models.CharField(max_length=100)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds, for audio and video.")
    source = models.CharField(max_length=12, choices=AssetSource.choices)
    generation = models.ForeignKey("generations.Generation", null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="outputs")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="children")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(size__gte=0), name="assets_size_not_negative"),
        ]
        indexes = [
            # asset_list_for_user(): a user's gallery newest first, keyset-paginated on (created_at, id).
            models.Index(fields=["owner", "-created_at", "-id"], name="assets_owner_recent"),
            # ...filtered to one project, the project page's grid.
            models.Index(fields=["project", "-created_at", "-id"], name="assets_project_recent"),
        ]

    def __str__(self) -> str:
        return self.name
