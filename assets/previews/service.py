"""Previews: two WebP thumbnails, a blurhash and a perceptual hash for every asset that has something to
show, plus a full-size still for the kinds that are not pictures themselves (a video's poster frame, an
audio waveform, a PDF's first page). Made by a worker (assets.tasks.asset_preview_make) after the asset
exists; the asset is usable meanwhile, with preview_status "pending".

The renderers (assets.previews.renderers, assets.previews.stills) are pure functions of a local file;
this module picks one for an asset, hands it a local copy of the original, stores what it made and
updates the row.

Idempotent: output files are named by their content, so running twice (or after a crash mid-run)
writes the same names and no orphans; the row is updated under a row lock, and the files it pointed to
before are deleted once that commits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, cast

from django.core.files.base import ContentFile
from django.db import OperationalError, transaction

from assets.models import Asset, AssetKind, PreviewStatus, preview_upload_to
from assets.previews.renderers import (
    DEMUXERS,
    IMAGE_LOADERS,
    PDF_MIME,
    decode_message,
    decoder_errors,
    render_audio,
    render_image,
    render_pdf,
    render_video,
)
from assets.previews.stills import PreviewError, Rendered
from assets.storage import CHUNK, files_delete, open_stored, stored_mime
from core.dispatch import task_send

if TYPE_CHECKING:
    from django.core.files.storage import Storage

logger = logging.getLogger(__name__)

PREVIEW_TASK = "assets.tasks.asset_preview_make"  # sent by name: assets.tasks imports this module
FILE_FIELDS = ("preview", "thumb_small", "thumb_large")


class PreviewRetry(Exception):
    """A transient failure (storage or database unavailable): the task retries with backoff."""


# --- entry points ---------------------------------------------------------------------------------------

def preview_enqueue(asset_id: uuid.UUID | str) -> None:
    """Queue the preview once the current transaction commits (the worker must see the row). `robust`:
    a broker that is down must not turn a stored upload into an error; the asset stays pending and
    `manage.py previews_backfill` queues it again."""
    transaction.on_commit(partial(_send, str(asset_id)), robust=True)


def _send(asset_id: str, force: bool = False) -> None:
    task_send(PREVIEW_TASK, args=[asset_id], kwargs={"force": force})


def preview_make(asset: Asset | uuid.UUID | str, *, force: bool = False) -> str | None:
    """Make (or remake, with `force`) an asset's previews and return the resulting preview_status; None
    when the asset no longer exists. Input problems end in "failed" with a reason and no files; storage
    and database outages raise PreviewRetry, leaving the row as it was."""
    asset_id = asset.pk if isinstance(asset, Asset) else uuid.UUID(str(asset))
    try:
        row = Asset.objects.filter(pk=asset_id).first()
    except OperationalError as exc:
        raise PreviewRetry(f"database unavailable: {exc}") from exc
    if row is None:
        return None
    if not force and row.preview_status in (PreviewStatus.READY, PreviewStatus.NONE):
        return row.preview_status
    maker = _maker_for(row)
    if maker is None:
        return _save(row.pk, Rendered(), status=PreviewStatus.NONE, force=force)
    try:
        with _local_copy(row) as path:
            outcome = _render(maker, path, row)
    except Exception as exc:
        if isinstance(exc, FileNotFoundError):  # open_stored turns S3's 404 into this too
            return preview_fail(row.pk, "The original file is missing from storage.", force=True)
        if isinstance(exc, _storage_errors()):
            raise PreviewRetry(f"storage unavailable: {exc}") from exc
        raise
    if isinstance(outcome, str):
        return preview_fail(row.pk, outcome, force=True)
    return _save(row.pk, outcome, status=PreviewStatus.READY, force=force)


def _render(maker: Callable[[str, str], Rendered], path: str, asset: Asset) -> Rendered | str:
    """Run a decoder on the local copy; a file it cannot decode is the file's fault, whatever the
    decoder raised (FFmpeg reports some damage as OSError), so it comes back as the reason to show."""
    try:
        return maker(path, asset.mime)
    except PreviewError as exc:
        return str(exc)
    except decoder_errors() as exc:
        logger.info("preview of asset %s failed to decode: %s", asset.pk, exc)
        return decode_message(asset.kind, exc)


def preview_fail(asset_id: uuid.UUID | str, message: str, *, force: bool = False) -> str | None:
    """Record a final failure. Without `force` (a transient error that ran out of retries) a preview
    that another run made meanwhile is left alone."""
    try:
        with transaction.atomic():
            row = Asset.objects.select_for_update().filter(pk=asset_id).first()
            if row is None:
                return None
            if not force and row.preview_status in (PreviewStatus.READY, PreviewStatus.NONE):
                return row.preview_status
            stale = [getattr(row, name).name for name in FILE_FIELDS if getattr(row, name).name]
            Asset.objects.filter(pk=row.pk).update(
                preview_status=PreviewStatus.FAILED, preview_error=message[:255], blurhash="", phash="",
                **{name: "" for name in FILE_FIELDS})
            transaction.on_commit(partial(_delete_files, row.file.storage, stale))
    except OperationalError as exc:
        raise PreviewRetry(f"database unavailable: {exc}") from exc
    return PreviewStatus.FAILED


# --- storing ----------------------------------------------------------------------------------------------

def _save(asset_id: uuid.UUID, rendered: Rendered, *, status: str, force: bool) -> str | None:
    storage = Asset.file.field.storage
    row = Asset.objects.filter(pk=asset_id).only("id", "project_id").first()
    if row is None:
        return None
    names: dict[str, str] = {}
    written: list[str] = []
    try:
        for name, (data, ext) in rendered.files.items():
            digest = hashlib.sha256(data).hexdigest()[:16]
            wanted = preview_upload_to(row, f"{name.replace('thumb_', '')}-{digest}.{ext}")
            # Named by content: a re-run (or a retry after a crash) finds the same file already there. The
            # size check catches a file cut short by a crash mid-write (local storage writes in place).
            if storage.exists(wanted) and storage.size(wanted) == len(data):
                names[name] = wanted
            else:
                if storage.exists(wanted):
                    storage.delete(wanted)
                names[name] = storage.save(wanted, ContentFile(data))
                written.append(names[name])
        with transaction.atomic():
            locked = Asset.objects.select_for_update().filter(pk=asset_id).first()
            if locked is None:  # deleted while we worked: everything named for it is garbage
                _delete_files(storage, list(names.values()))
                return None
            if not force and locked.preview_status in (PreviewStatus.READY, PreviewStatus.NONE):
                # A duplicate delivery finished first; keep its result, drop ours.
                kept = {getattr(locked, n).name for n in FILE_FIELDS}
                _delete_files(storage, [n for n in names.values() if n not in kept])
                return locked.preview_status
            previous = [getattr(locked, n).name for n in FILE_FIELDS]
            Asset.objects.filter(pk=asset_id).update(
                preview_status=status, preview_error="", blurhash=rendered.blurhash, phash=rendered.phash,
                **{n: names.get(n, "") for n in FILE_FIELDS})
            stale = [n for n in previous if n and n not in names.values()]
            transaction.on_commit(partial(_delete_files, storage, stale))
    except _storage_errors() as exc:
        _delete_files(storage, written)
        raise PreviewRetry(f"storage unavailable: {exc}") from exc
    return status


def _delete_files(storage: Storage, names: list[str]) -> None:
    """A leftover file is better than a lost preview row: failures are logged, not raised."""
    files_delete(names, storage=storage)


def _storage_errors() -> tuple[type[BaseException], ...]:
    """What storage raises when it is unavailable or full: worth a retry later."""
    from botocore.exceptions import BotoCoreError, ClientError  # on first failure: boto stays out of process start

    return (OSError, BotoCoreError, ClientError, OperationalError)


@contextmanager
def _local_copy(asset: Asset) -> Iterator[str]:
    """A path to the original: the file itself on local storage; on remote storage (S3) a temporary copy,
    streamed in chunks, removed afterwards. Decoders get a seekable local file either way."""
    storage = asset.file.storage
    name = cast(str, asset.file.name)  # typed str | None by the stubs; every asset row has its file
    try:
        path = storage.path(name)
    except NotImplementedError:
        path = None
    if path is not None:
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        yield path
        return
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    with tempfile.NamedTemporaryFile(prefix="preview-", suffix=suffix) as tmp:
        # open_stored reads the object's body as it arrives (django-storages' own open() would first
        # spool the whole object into a temporary file of its own).
        with open_stored(name, storage) as src:
            shutil.copyfileobj(src, tmp, CHUNK)
        tmp.flush()
        yield tmp.name


def _maker_for(asset: Asset) -> Callable[[str, str], Rendered] | None:
    if asset.kind == AssetKind.IMAGE and asset.mime in IMAGE_LOADERS:
        return render_image
    if asset.kind == AssetKind.VIDEO and asset.mime in DEMUXERS:
        return render_video
    if asset.kind == AssetKind.AUDIO and asset.mime in DEMUXERS:
        return render_audio
    if asset.kind == AssetKind.TEXT and asset.mime == PDF_MIME:
        return render_pdf
    return None  # a mesh, plain text, anything else: nothing to draw


def content_type_for(name: str) -> str:
    """A preview file's type, from the extension it was stored under (WebP, PNG or JPEG)."""
    return stored_mime(name)


def previews_backfill(*, everything: bool = False, kind: str | None = None, batch_size: int = 500,
                      inline: bool = False, progress: Callable[[int], None] | None = None) -> int:
    """Queue previews for assets that have none yet (pending: a lost message, a broker that was down;
    failed: worth another try after a fix), or for every asset with `everything` (a new size or encoder:
    remade even when ready). Walks the table by primary key in batches, never loading it whole.
    `inline` makes them in this process instead (no worker needed). Returns how many were handled."""
    qs = Asset.objects.all()
    if not everything:
        qs = qs.filter(preview_status__in=[PreviewStatus.PENDING, PreviewStatus.FAILED])
    if kind:
        qs = qs.filter(kind=kind)
    done = 0
    last: uuid.UUID | None = None
    while True:
        page = qs.filter(pk__gt=last) if last is not None else qs
        ids = list(page.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return done
        for asset_id in ids:
            if inline:
                preview_make(asset_id, force=True)
            else:
                # force: a failed one must be remade, and with --all a ready one too. A pending one
                # queued twice (its first message still in flight) costs one duplicate render, no files.
                _send(str(asset_id), force=True)
        done += len(ids)
        last = ids[-1]
        if progress is not None:
            progress(done)
