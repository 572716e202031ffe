from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Func, Q
from django.db.models.functions import Lower


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


class PreviewStatus(models.TextChoices):
    PENDING = "pending"  # the worker has not made it yet; the asset is usable meanwhile
    READY = "ready"
    FAILED = "failed"  # see preview_error; the gallery shows a kind icon instead
    NONE = "none"  # nothing to preview (a mesh, a text file)


def preview_upload_to(instance: Asset, filename: str) -> str:
    return f"previews/{instance.project_id}/{instance.id.hex[:2]}/{instance.id.hex}-{filename}"


class Tag(models.Model):
    """A user's label; names are unique per user, case-insensitively."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="asset_tags")
    name = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), "owner", name="assets_tag_unique_per_owner"),
        ]

    def __str__(self) -> str:
        return self.name


class RatingKey(Func):
    """The rating with unrated as 0, so the rating sort is a plain keyset with unrated assets last.
    The literal 0 (not a parameter) is deliberate: SQLite matches an expression index only against
    identical SQL, and the index `assets_live_owner_rating` is on `COALESCE("rating", 0)`."""

    template = "COALESCE(%(expressions)s, 0)"
    output_field = models.PositiveSmallIntegerField()


LIVE = Q(deleted_at__isnull=True)
RECENT = (F("created_at").desc(), F("id").desc())


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

    # What made it, copied from the generation at ingest so the gallery filters and searches one table.
    prompt = models.TextField(blank=True)
    model_id = models.CharField(max_length=120, blank=True)
    provider = models.CharField(max_length=40, blank=True)
    aspect = models.FloatField(null=True, blank=True, help_text="width / height, for the aspect-ratio filter.")

    # Organisation.
    tags = models.ManyToManyField(Tag, blank=True, related_name="assets")
    favourite = models.BooleanField(default=False)
    rating = models.PositiveSmallIntegerField(null=True, blank=True)  # 1-5
    notes = models.TextField(blank=True)
    # name + prompt + notes + tag names, kept by the services that change any of them: what search reads.
    search_text = models.TextField(blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="In the trash since; purged after 30 days.")

    # Previews, made by a worker after the asset exists (assets.previews.service).
    preview_status = models.CharField(max_length=8, choices=PreviewStatus.choices, default=PreviewStatus.PENDING)
    preview_error = models.CharField(max_length=255, blank=True)
    preview = models.FileField(upload_to=preview_upload_to, max_length=255, blank=True,
                               help_text="A full-size still: the image itself needs none; a video's poster "
                                         "frame, an audio waveform, a PDF's first page.")
    thumb_small = models.FileField(upload_to=preview_upload_to, max_length=255, blank=True)
    thumb_large = models.FileField(upload_to=preview_upload_to, max_length=255, blank=True)
    blurhash = models.CharField(max_length=64, blank=True)
    phash = models.CharField(max_length=16, blank=True, help_text="64-bit perceptual hash, hex.")

    # Not a column: the sorted tag names a page's assets carry, set by asset_tag_names_attach in one query.
    tag_names: list[str]

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(size__gte=0), name="assets_size_not_negative"),
            models.CheckConstraint(condition=models.Q(rating__isnull=True) | models.Q(rating__gte=1, rating__lte=5),
                                   name="assets_rating_1_to_5"),
        ]
        indexes = [
            # asset_list_for_user(): a user's gallery newest first, keyset-paginated on (created_at, id).
            models.Index(fields=["owner", "-created_at", "-id"], name="assets_owner_recent"),
            # ...filtered to one project, the project page's grid.
            models.Index(fields=["project", "-created_at", "-id"], name="assets_project_recent"),
            # The gallery (assets.library.gallery). Each index starts with the owner (or the project) and goes on
            # in a sort's key order, so a keyset page is one seek to the cursor and a short read; partial
            # on the live side, since only the trash view shows trashed assets (it has its own index).
            # Newest (or, scanned backwards, oldest) first, and the date-range filters.
            models.Index(F("owner"), *RECENT, name="assets_live_owner_recent", condition=LIVE),
            # sort=rating: ORDER BY COALESCE(rating, 0) DESC, created_at DESC, id DESC.
            models.Index(F("owner"), RatingKey(F("rating")).desc(), *RECENT, name="assets_live_owner_rating",
                         condition=LIVE),
            models.Index(F("project"), *RECENT, name="assets_live_project_recent", condition=LIVE),
            # kind=…: a rare kind among many images would otherwise be a long filtered walk.
            models.Index(F("owner"), F("kind"), *RECENT, name="assets_live_owner_kind", condition=LIVE),
            models.Index(F("owner"), *RECENT, name="assets_live_owner_favourite", condition=LIVE & Q(favourite=True)),
            models.Index(F("owner"), *RECENT, name="assets_trash_owner_recent", condition=Q(deleted_at__isnull=False)),
            # Exact duplicates (assets.library.duplicates): owner_id = … AND sha256 = ….
            models.Index(fields=["owner", "sha256"], name="assets_live_owner_sha256", condition=LIVE),
            # Full-text search has a GIN index on PostgreSQL only: migration 0003 creates it.
        ]

    def __str__(self) -> str:
        return self.name


class Collection(models.Model):
    """An ordered set of a user's assets (from any of their projects)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="collections")
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="collections")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    assets = models.ManyToManyField(Asset, through="CollectionItem", related_name="collections")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="collections_owner_recent")]

    def __str__(self) -> str:
        return self.name


class CollectionItem(models.Model):
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="items")
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="collection_items")
    position = models.PositiveIntegerField()
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["collection", "asset"], name="collection_asset_once")]
        indexes = [models.Index(fields=["collection", "position"], name="collection_items_order")]


class ShareTarget(models.TextChoices):
    ASSET = "asset"
    COLLECTION = "collection"
    PROJECT = "project"


class ShareLink(models.Model):
    """A read-only link to one asset, collection or project. Shows only what the owner chose; never costs."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="share_links")
    token = models.CharField(max_length=64, unique=True)  # secrets.token_urlsafe; the link's only secret
    target = models.CharField(max_length=10, choices=ShareTarget.choices)
    asset = models.ForeignKey(Asset, null=True, blank=True, on_delete=models.CASCADE, related_name="share_links")
    collection = models.ForeignKey(Collection, null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="share_links")
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="share_links")
    show_prompt = models.BooleanField(default=False)
    password = models.CharField(max_length=128, blank=True, help_text="A Django password hash, or empty.")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    view_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(name="share_exactly_one_target", condition=(
                models.Q(target="asset", asset__isnull=False, collection__isnull=True, project__isnull=True)
                | models.Q(target="collection", asset__isnull=True, collection__isnull=False, project__isnull=True)
                | models.Q(target="project", asset__isnull=True, collection__isnull=True, project__isnull=False))),
        ]
        indexes = [models.Index(fields=["owner", "-created_at"], name="shares_owner_recent")]
