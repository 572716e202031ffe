from __future__ import annotations

import hashlib
import io
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from assets.inspection import Inspection, inspect_file
from assets.models import Asset, AssetSource
from projects.models import Project

CHUNK = 1024 * 1024


def _sha256(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    fh.seek(0)
    for chunk in iter(lambda: fh.read(CHUNK), b""):
        digest.update(chunk)
    fh.seek(0)
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
    generation: Any = None,
    parent: Asset | None = None,
    metadata: dict[str, Any] | None = None,
) -> Asset:
    """Store one file as an asset of `project`. The type comes from the bytes; a refused file raises
    `RefusedFile` and stores nothing. The file is streamed to storage in chunks (an upload larger than
    FILE_UPLOAD_MAX_MEMORY_SIZE arrives as a temporary file, never wholly in memory).

    Inside a caller's transaction that later rolls back, the caller deletes `asset.file.name` (see
    generations.ingest), since Django has no on-rollback hook."""
    inspection = inspect_file(fh, name=name, size=size)
    made_by = {}
    if generation is not None:
        made_by = {"prompt": str((generation.inputs or {}).get("prompt") or ""), "model_id": generation.model_id,
                   "provider": generation.provider}
    asset = Asset(
        owner_id=project.owner_id,
        project=project,
        kind=inspection.kind,
        name=_display_name(name, inspection),
        mime=inspection.mime,
        size=size,
        sha256=_sha256(fh),
        width=inspection.width,
        height=inspection.height,
        source=source,
        generation=generation,
        parent=parent,
        metadata=metadata or {},
        aspect=(inspection.width / inspection.height) if inspection.width and inspection.height else None,
        **made_by,
    )
    asset.search_text = asset_search_text(asset)
    asset.file.save(f"upload.{inspection.extension}", File(fh), save=False)
    try:
        asset.save()
    except BaseException:
        default_storage.delete(asset.file.name)
        raise
    return asset


def asset_search_text(asset: Asset, tag_names: list[str] | None = None) -> str:
    """What search matches: the name, the prompt, the notes and the tag names, in one column. Every
    service that changes one of them writes it again (tags: pass the asset's tag names)."""
    if tag_names is None:
        tag_names = list(asset.tags.values_list("name", flat=True)) if asset.pk and not asset._state.adding else []
    return " ".join(part for part in (asset.name, asset.prompt, asset.notes, *tag_names) if part)


def asset_create_from_bytes(*, project: Project, data: bytes, name: str, **kwargs: Any) -> Asset:
    return asset_create(project=project, fh=io.BytesIO(data), name=name, size=len(data), **kwargs)


def asset_file_names(asset: Asset) -> list[str]:
    """Every stored file of an asset: the original and its previews."""
    return [f.name for f in (asset.file, asset.preview, asset.thumb_small, asset.thumb_large) if f and f.name]


def asset_files_delete_for_project(*, project: Project) -> None:
    names = [n for row in project.assets.values_list("file", "preview", "thumb_small", "thumb_large") for n in row]
    transaction.on_commit(lambda: [default_storage.delete(n) for n in names if n])


def asset_download_url(*, asset: Asset, request: Any = None) -> str:
    """A URL the caller can fetch the file from: a presigned S3 URL when S3 is the storage, else our
    own download endpoint, which checks access and serves the file as an attachment."""
    from django.urls import reverse

    storage = asset.file.storage
    if storage.__class__.__module__.startswith("storages."):
        return storage.url(asset.file.name, parameters={
            "ResponseContentDisposition": f'attachment; filename="{asset.name}"',
            "ResponseContentType": asset.mime,
        })
    path = reverse("asset-download", kwargs={"pk": asset.pk})
    return request.build_absolute_uri(path) if request is not None else path
