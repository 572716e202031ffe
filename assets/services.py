from __future__ import annotations

import hashlib
import io
from typing import IO, TYPE_CHECKING, Any

from django.core.files import File
from django.db import transaction

from assets.models import Asset, AssetSource
from assets.previews.service import preview_enqueue
from assets.uploads.inspection import Inspection, inspect_file, iter_chunks
from assets.uploads.quota import quota_check, quota_reserve
from assets.uploads.sanitise import location_remove
from projects.models import Project

if TYPE_CHECKING:
    from generations.models import Generation


def _sha256(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter_chunks(fh):
        digest.update(chunk)
    return digest.hexdigest()


def _display_name(name: str, inspection: Inspection) -> str:
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip() or f"file.{inspection.extension}"
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return f"{stem[:200]}.{inspection.extension}"


def asset_create(
    *,
    project: Project,
    fh: IO[bytes],
    name: str,
    size: int,
    source: str = AssetSource.UPLOAD,
    generation: Generation | None = None,
    parent: Asset | None = None,
    metadata: dict[str, Any] | None = None,
    keep_location: bool = False,
    strict: bool | None = None,
) -> Asset:
    """Store one file as an asset of `project`. The type comes from the bytes; a refused file raises
    `RefusedFile` (or `QuotaExceeded`) and stores nothing. The file is streamed to storage in chunks (an
    upload larger than FILE_UPLOAD_MAX_MEMORY_SIZE arrives as a temporary file, never wholly in memory,
    and is moved into local storage rather than copied).

    Uploads (source=upload) get every check (assets.uploads.inspection, strict) and count against the owner's
    storage quota; generated outputs are inspected for type and image safety but are never refused for
    quota or for media that does not probe (see assets.uploads.quota). `strict` overrides the inspection's
    strictness. Photos lose their GPS location unless
    `keep_location` (assets.uploads.sanitise); the stored size and sha256 are those of the stored bytes.

    Inside a caller's transaction that later rolls back, the caller deletes `asset.file.name` (see
    generations.ingest), since Django has no on-rollback hook."""
    upload = source == AssetSource.UPLOAD
    inspection = inspect_file(fh, name=name, size=size, strict=upload if strict is None else strict)
    if upload:
        quota_check(owner=project.owner, size=size)  # before writing anything
    cleaned = None if keep_location else location_remove(fh, mime=inspection.mime)
    content: Any = fh
    extra: dict[str, Any] = {}
    if cleaned is not None:
        content, size = cleaned
        extra["location_removed"] = True
    if inspection.metadata:
        extra["media"] = inspection.metadata
    made_by = {}
    if generation is not None:
        made_by = {"prompt": str((generation.inputs or {}).get("prompt") or ""), "model_id": generation.model_id,
                   "provider": generation.provider}
    try:
        asset = Asset(
            owner_id=project.owner_id,
            project=project,
            kind=inspection.kind,
            name=_display_name(name, inspection),
            mime=inspection.mime,
            size=size,
            sha256=_sha256(content),
            width=inspection.width,
            height=inspection.height,
            duration=inspection.duration,
            source=source,
            generation=generation,
            parent=parent,
            metadata={**(metadata or {}), **extra},
            aspect=(inspection.width / inspection.height) if inspection.width and inspection.height else None,
            **made_by,
        )
        asset.search_text = asset_search_text(asset)
        # A Django File (an upload) is passed as it is: FileSystemStorage moves a temporary upload into
        # place instead of copying it.
        asset.file.save(f"upload.{inspection.extension}", content if isinstance(content, File) else File(content),
                        save=False)
        try:
            with transaction.atomic():
                if upload:
                    quota_reserve(owner=project.owner, size=size)  # again, under the owner's lock
                asset.save()
        except BaseException:
            asset.file.storage.delete(asset.file.name)  # type: ignore[arg-type]  # named by file.save() above
            raise
    finally:
        if cleaned is not None:
            cleaned[0].close()
    preview_enqueue(asset.pk)  # a worker makes the thumbnails after commit; the asset is usable meanwhile
    return asset


def asset_search_text(asset: Asset, tag_names: list[str] | None = None) -> str:
    """What search matches: the name, the prompt, the notes and the tag names, in one column. Every
    service that changes one of them writes it again (tags: pass the asset's tag names)."""
    if tag_names is None:
        tag_names = list(asset.tags.values_list("name", flat=True)) if asset.pk and not asset._state.adding else []
    return " ".join(part for part in (asset.name, asset.prompt, asset.notes, *tag_names) if part)


def asset_create_from_bytes(*, project: Project, data: bytes, name: str, **kwargs: Any) -> Asset:
    """asset_create for bytes in memory (seed data, tests). The checks follow `source` as in
    asset_create: an upload gets every strict check; pass `strict` to override."""
    return asset_create(project=project, fh=io.BytesIO(data), name=name, size=len(data), **kwargs)
