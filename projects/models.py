from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Length
from django.db.models.lookups import LessThanOrEqual

NAME_MAX = 120
# The same bound as a collection's description (assets/library/collections.py): a paragraph or two.
DESCRIPTION_MAX = 2000


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=NAME_MAX)
    description = models.TextField(blank=True, max_length=DESCRIPTION_MAX)
    tags = models.JSONField(default=list, blank=True)
    archived = models.BooleanField(default=False)
    # Default fallback models for this project's generations (see Generation.fallback_models).
    fallback_models = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            # The CLI and the web address projects by name within an owner's account.
            models.UniqueConstraint(fields=["owner", "name"], name="projects_unique_name_per_owner"),
            # A TextField's max_length is only checked by forms; project_create/_update refuse longer
            # text with a 400, and this keeps any other writer to the same bound.
            models.CheckConstraint(condition=LessThanOrEqual(Length("description"), DESCRIPTION_MAX),
                                   name="projects_description_max_length"),
        ]
        indexes = [
            # project_list_for_user(): an owner's projects, most recently touched first.
            models.Index(fields=["owner", "archived", "-updated_at"], name="projects_owner_recent"),
        ]

    def __str__(self) -> str:
        return self.name
