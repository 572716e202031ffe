"""Where asset files live and how they are handed out.

Local files by default; S3 (or any S3-protocol server: MinIO, R2, …) through django-storages when
`AWS_STORAGE_BUCKET_NAME` is set (config/settings/base.py). Either way a user's file is never served from
our origin as anything a browser would run:

- the type we send is the one the sniffer decided at upload (assets.uploads.inspection), restricted to an
  allow-list of media and plain-text types; anything else goes out as application/octet-stream;
- local downloads carry `X-Content-Type-Options: nosniff`, a sandboxing CSP and a
  `Content-Disposition` (`protect`);
- on S3 every object is stored private (no ACL), with its `ContentType` from our own sniffed type and
  `ContentDisposition: attachment`, and every link is a presigned GET that overrides both for that
  download (`presigned_url`). S3 cannot add `nosniff` to a presigned GET; the bucket (or a CDN in front
  of it) should: see docs/assets/storage-and-export.md.

Reading: `open_stored` / `stored_chunks` read a stored file in chunks. On S3 they stream the object's
body; django-storages' own `S3File` downloads the whole object into a temporary file first, which for
a 2 GB video in an export would be 2 GB of memory or disk per file.

Deleting: `files_delete_on_commit` deletes the files of rows a transaction removes once it commits, a
few in the request and more in batches on the worker; `files_delete` deletes each on its own and
returns the ones that failed.
"""

from __future__ import annotations

import logging
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

import filetype
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import HttpResponseBase

from assets.uploads.inspection import ACCEPTED, MESH_EXTENSIONS, TEXT_EXTENSIONS
from core.dispatch import task_send

if TYPE_CHECKING:
    from assets.models import Asset
    from projects.models import Project

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
OCTET_STREAM = "application/octet-stream"
INLINE_PREFIXES = ("image/", "video/", "audio/")


def _stored_types() -> dict[str, str]:
    """File extension → MIME type, for the names we store: the sniffer picks the extension from the
    content (asset_create stores `upload.<inspection.extension>`), so the extension maps back to the
    sniffed type exactly. Previews are WebP/PNG/JPEG, covered by the same table."""
    types = {t.extension: t.mime for t in filetype.types if t.mime in ACCEPTED}
    types.update({ext: "text/plain" for ext in TEXT_EXTENSIONS})
    types.update(MESH_EXTENSIONS)
    return types


STORED_TYPES = _stored_types()
# Every type we ever send. None of them is HTML, SVG, XML or script: whatever else might be in a row
# is sent as application/octet-stream.
SERVABLE_TYPES = frozenset(STORED_TYPES.values())


def safe_mime(mime: str) -> str:
    mime = (mime or "").split(";", 1)[0].strip().lower()
    return mime if mime in SERVABLE_TYPES else OCTET_STREAM


def stored_mime(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return STORED_TYPES.get(ext, OCTET_STREAM)


def may_inline(mime: str) -> bool:
    """Only pictures, video and audio may be shown in the page (an <img>, a <video>); text and
    everything else is always an attachment."""
    return safe_mime(mime).startswith(INLINE_PREFIXES)


# --- Content-Disposition (RFC 6266, with RFC 8187's filename* for names that are not plain ASCII) -----

_DROP_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"}  # controls, bidi overrides, separators
_ATTR_SAFE = "!#$&+^`|~"  # RFC 8187 attr-char beyond letters, digits and "-._" (which quote() keeps)


def clean_filename(name: str) -> str:
    """The user's file name, made safe to hand to a browser: no path separators, no control or
    direction-override characters (an RLO can make "gnp.exe" read as "exe.png"), NFC-normalised."""
    name = unicodedata.normalize("NFC", name or "")
    name = "".join("_" if ch in "/\\" else ch for ch in name if unicodedata.category(ch) not in _DROP_CATEGORIES)
    name = name.strip().strip(".") or "download"
    return name[:200]


def _ascii_fallback(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""

    def ascii_only(text: str) -> str:
        out = []
        for ch in text:
            if not ch.isascii():  # "é" keeps its "e"; "«" or "灯" has no ASCII form
                ch = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode("ascii") or (
                    "" if unicodedata.combining(ch) else "_")
            # Quotes and backslashes would end or escape the quoted-string; "%" is decoded by some clients.
            out.append("".join("_" if c in '"\\%' or not c.isprintable() else c for c in ch))
        return "".join(out).strip()

    original_stem, stem, ext = stem, ascii_only(stem), ascii_only(ext)
    if not stem or (any(ch.isalnum() for ch in original_stem) and not any(ch.isalnum() for ch in stem)):
        stem = "download"  # "灯台" would otherwise become "__"
    return f"{stem}.{ext}" if ext else stem


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """`attachment; filename="plain ascii"; filename*=UTF-8''percent-encoded`: old clients read the
    ASCII fallback, every current browser the exact name."""
    name = clean_filename(filename)
    fallback = _ascii_fallback(name)
    value = f'{"inline" if inline else "attachment"}; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe=_ATTR_SAFE)}"
    return value


def protect(response: HttpResponseBase, *, filename: str, inline: bool = False) -> HttpResponseBase:
    """Headers for a user's file served from our own origin: never sniffed into another type, never
    scripted or framed, named as the user named it."""
    response["Content-Disposition"] = content_disposition(filename, inline=inline)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


# --- S3 -------------------------------------------------------------------------------------------------

def _media_s3_storage_class() -> type:
    from storages.backends.s3 import S3Storage  # boto3 on first use: see __getattr__ below

    class MediaS3Storage(S3Storage):
        """django-storages' S3 backend, storing each object with the type we sniffed, as an attachment.

        Without this, django-storages takes the ContentType from the uploaded file object (the client's
        claim) or guesses it from the name; and an object fetched without our presigned overrides (a
        URL whose parameters were stripped, a misconfigured CDN) would be rendered inline."""

        def get_object_parameters(self, name: str) -> dict[str, Any]:
            params = super().get_object_parameters(name)
            params.setdefault("ContentType", stored_mime(name))
            params.setdefault("ContentDisposition", "attachment")
            params.setdefault("CacheControl", "private, max-age=3600")
            return params

    MediaS3Storage.__module__, MediaS3Storage.__qualname__ = __name__, "MediaS3Storage"
    return MediaS3Storage


def __getattr__(name: str) -> Any:
    # `assets.storage.MediaS3Storage` (the STORAGES backend when S3 is configured) is built on first
    # use: importing django-storages' S3 backend pulls in boto3, half a second at every process start
    # for installations that keep their files on disk.
    if name == "MediaS3Storage":
        cls = _media_s3_storage_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_s3(storage: Any) -> bool:
    cls = storage.__class__  # a lazy default_storage sets itself up here, importing its backend
    s3 = sys.modules.get("storages.backends.s3")
    return s3 is not None and issubclass(cls, s3.S3Storage)


def presigns(storage: Any) -> bool:
    """Whether this storage hands out presigned S3 URLs (what settings configure for S3). A custom
    domain would give unsigned URLs, on which S3 ignores the response-* overrides."""
    return is_s3(storage) and bool(storage.querystring_auth) and not storage.custom_domain


def presigned_url(storage: Any, name: str, *, filename: str, mime: str, inline: bool = False,
                  expire: int | None = None) -> str:
    """A GET URL for one object, valid for `expire` seconds (AWS_QUERYSTRING_EXPIRE by default),
    whose response carries our Content-Disposition and Content-Type whatever is stored on the object.
    The overrides are part of the signature: changing them invalidates the URL."""
    return storage.url(name, parameters={
        "ResponseContentDisposition": content_disposition(filename, inline=inline and may_inline(mime)),
        "ResponseContentType": safe_mime(mime),
        "ResponseCacheControl": "private, max-age=3600",
    }, expire=expire)


class _S3Body:
    """The body of an S3 GetObject as a readable file: `read(n)` pulls from the socket as it goes."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, size: int = -1) -> bytes:
        return self._body.read(None if size is None or size < 0 else size)

    def close(self) -> None:
        self._body.close()


@contextmanager
def open_stored(name: str, storage: Any = None) -> Iterator[IO[bytes]]:
    """A stored file opened for reading in chunks, without copying it anywhere first. Raises
    FileNotFoundError if it is not there."""
    storage = default_storage if storage is None else storage
    if is_s3(storage):
        from botocore.exceptions import ClientError  # S3 only: boto stays out of every process start (above)
        from storages.utils import clean_name  # S3 only, as above

        key = storage._normalize_name(clean_name(name))
        extra = {k: v for k, v in storage.get_object_parameters(key).items() if k.startswith("SSECustomer")}
        try:
            body = storage.connection.meta.client.get_object(Bucket=storage.bucket_name, Key=key, **extra)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(name) from exc
            raise
        reader: Any = _S3Body(body)
    else:
        reader = storage.open(name, "rb")
    try:
        yield reader
    finally:
        reader.close()


def stored_chunks(name: str, storage: Any = None, chunk_size: int = CHUNK) -> Iterator[bytes]:
    with open_stored(name, storage) as fh:
        while chunk := fh.read(chunk_size):
            yield chunk


# --- deleting ---------------------------------------------------------------------------------------------

FILES_DELETED_INLINE = 100  # more than this (a large trash, a whole project) go to the worker in batches
FILES_DELETE_BATCH = 1000
FILES_DELETE_TASK = "assets.tasks.assets_files_delete"  # sent by name: assets.tasks imports this module


def asset_file_names(asset: Asset) -> list[str]:
    """Every stored file of an asset: the original and its previews."""
    return [f.name for f in (asset.file, asset.preview, asset.thumb_small, asset.thumb_large) if f and f.name]


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


def files_delete_send(names: list[str]) -> None:
    """Queue one batch for the worker (assets.tasks.assets_files_delete); raises when the broker is down."""
    task_send(FILES_DELETE_TASK, args=[names])


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
        for start in range(0, len(names), FILES_DELETE_BATCH):
            batch = names[start:start + FILES_DELETE_BATCH]
            try:
                files_delete_send(batch)
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
