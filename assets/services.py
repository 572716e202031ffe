from __future__ import annotations

import functools
import hashlib
import io
import logging
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from assets.models import Asset, AssetSource
from assets.previews.service import preview_enqueue
from assets.uploads.inspection import Inspection, inspect_file, iter_chunks
from projects.models import Project

logger = logging.getLogger(__name__)


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
    generation: Any = None,
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
    from assets.uploads.quota import quota_check, quota_reserve
    from assets.uploads.sanitise import location_remove

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


def asset_file_names(asset: Asset) -> list[str]:
    """Every stored file of an asset: the original and its previews."""
    return [f.name for f in (asset.file, asset.preview, asset.thumb_small, asset.thumb_large) if f and f.name]


FILES_DELETED_INLINE = 100  # more than this (a large trash, a whole project) go to the worker in batches
FILES_DELETE_BATCH = 1000


def files_delete(names: list[str], *, storage: Any = None) -> list[str]:
    """Delete these stored files, each on its own: one that fails (storage down, a permission) is logged
    and returned, and the rest are still deleted."""
    storage = storage or default_storage
    failed = []
    for name in names:
        try:
            storage.delete(name)
        except Exception:
            logger.warning("could not delete stored file %s", name, exc_info=True)
            failed.append(name)
    return failed


def files_delete_on_commit(names: list[str]) -> None:
    """Delete files once the current transaction (which deletes their rows) commits; a rollback keeps
    them. A few are deleted there and then; more go to the worker in batches (assets.tasks), so emptying
    a trash of thousands on S3 never holds the request, and failures are retried."""
    names = [n for n in names if n]
    if not names:
        return

    def run() -> None:
        if len(names) <= FILES_DELETED_INLINE:
            files_delete(names)
            return
        from assets.tasks import assets_files_delete

        for start in range(0, len(names), FILES_DELETE_BATCH):
            batch = names[start:start + FILES_DELETE_BATCH]
            try:
                assets_files_delete.delay(batch)
            except Exception:  # the broker is down: delete them here rather than leave them behind
                logger.warning("could not queue the deletion of %d files; deleting them now", len(batch), exc_info=True)
                files_delete(batch)

    transaction.on_commit(run, robust=True)


def asset_files_delete_for_project(*, project: Project) -> None:
    """Delete the files of the project's assets once the caller's transaction (which deletes the
    project) commits. The rows are locked first: an asset moved out of the project meanwhile either
    left before this read (and keeps its files) or waits, and finds itself deleted with the project."""
    names = [n for row in project.assets.select_for_update().values_list("file", "preview", "thumb_small",
                                                                          "thumb_large") for n in row]
    files_delete_on_commit(names)


_PK = "00000000-0000-4000-8000-000000000000"


@functools.lru_cache(maxsize=64)
def _path_template(name: str, urlconf: Any, prefix: str, kwargs: tuple[tuple[str, str], ...]) -> str:
    from django.urls import reverse

    return reverse(name, urlconf=urlconf, kwargs={"pk": _PK, **dict(kwargs)})


def asset_path(name: str, pk: Any, **kwargs: str) -> str:
    """reverse(name, kwargs={"pk": pk, **kwargs}) for an asset's routes, without resolving the URL again
    for every asset of a page: the path is reversed once per route with a stand-in id, which is then
    replaced (a gallery page of 50 builds 150 of these)."""
    from django.urls import get_script_prefix, get_urlconf

    return _path_template(name, get_urlconf(), get_script_prefix(), tuple(sorted(kwargs.items()))).replace(
        _PK, str(pk))


def absolute_url(request: Any, path: str) -> str:
    """request.build_absolute_uri(path) for a path starting with "/", with the origin worked out once
    per request."""
    if request is None:
        return path
    origin = getattr(request, "_studio_origin", None)
    if origin is None:
        origin = request._studio_origin = request.build_absolute_uri("/").rstrip("/")
    return origin + path


def asset_download_url(*, asset: Asset, request: Any = None, inline: bool = False) -> str:
    """A URL the caller can fetch the file from: on S3 a presigned GET (AWS_QUERYSTRING_EXPIRE
    seconds) whose response carries our Content-Disposition and sniffed Content-Type, else our own
    download endpoint, which checks access and serves the file as an attachment. `inline` asks for
    pictures, video and audio to be shown rather than saved (anything else stays an attachment)."""
    from assets.storage import presigned_url, presigns

    storage = asset.file.storage
    if presigns(storage):
        return presigned_url(storage, asset.file.name, filename=asset.name, mime=asset.mime, inline=inline)
    return absolute_url(request, asset_path("asset-download", asset.pk) + ("?inline=1" if inline else ""))
