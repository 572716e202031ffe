"""Exports: a project, or a selection of assets, as one ZIP built while it is sent.

The archive is a stream (zipstream-ng): each file is read from storage in 1 MB chunks
(`assets.storage.stored_chunks`, S3 objects included) and written into the ZIP as it arrives; no temp
file ever holds the archive and memory stays flat whatever its size. Zip64 records are written when
the archive passes 4 GB. Already-compressed media are STORED; text, meshes and the metadata files are
DEFLATEd.

Layout (docs/assets/storage-and-export.md):

    images/…  videos/…  audio/…  text/…  meshes/…  other/…   the files, under their own names
    metadata.json                                          every asset's recipe, with `path` to its file
    metadata.csv                                           the same, one row per asset

Names are made safe for every desktop file system and unique case-insensitively ("shot (2).png").
The recipe is the user's own record, cost included (credits charged for the generation that made the
asset): it is their data. Share pages are what must never show cost. Provider keys never appear:
they are not stored on assets or generations, and any input or metadata key that looks like a
credential is dropped on the way out (`redact`).

With `embed=True`, PNG, JPEG and WebP files get the recipe written into them on the way (assets.sharing.embed);
the stored originals are never modified.

Access: every entry point resolves the asset ids first (`export_selection`, `export_project_ids`), so an
id that is not the user's is a 404 before a single byte is sent; a selection with an asset in the trash
is refused. Trashed assets are never in a project export.
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
import tempfile
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import zipstream
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Prefetch
from django.http import Http404, StreamingHttpResponse
from django.utils import timezone

from assets.library.selectors import asset_list_for_user
from assets.models import Asset, AssetKind, Collection
from assets.sharing.embed import embed_stream, embeddable
from assets.storage import CHUNK, content_disposition, open_stored, protect, safe_mime, stored_chunks
from core.errors import InvalidRequest
from core.lookups import id_list_clean
from projects.models import Project

if TYPE_CHECKING:
    from accounts.models import User

MAX_SELECTION = 10_000
MAX_MEMBER_NAME_BYTES = 200  # a file name in the archive, in UTF-8
BATCH = 200  # assets loaded (with tags and collections) per query
METADATA_SPOOL = 4 * 1024 * 1024  # recipes stay in memory up to this, then spill to a temp file
FOLDERS = {AssetKind.IMAGE: "images", AssetKind.VIDEO: "videos", AssetKind.AUDIO: "audio",
           AssetKind.TEXT: "text", AssetKind.MESH: "meshes", AssetKind.OTHER: "other"}
# PDFs and every image, video and audio format we accept are compressed already: DEFLATE would cost
# CPU for nothing (WAV is the exception, and not worth a second pass over hundreds of MB).
DEFLATE_TYPES = ("text/plain", "model/obj", "model/gltf-binary")
CSV_COLUMNS = ["path", "id", "name", "kind", "mime", "size", "sha256", "width", "height", "duration",
               "created_at", "source", "project_id", "project_name", "prompt", "negative_prompt", "model",
               "provider", "seed", "generation_id", "generation_inputs", "credits_charged",
               "provider_cost_usd", "tags", "rating", "favourite", "notes", "parent", "collections",
               "embedded", "missing"]
_SECRET_KEY = re.compile(r"(?i)(^|[_\-.])(api[_\-]?key|key|secret|secret[_\-]?key|password|passwd|token|"
                         r"access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|authorization|bearer|"
                         r"credentials?|private[_\-]?key|signature)$")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}


# --- which assets ---------------------------------------------------------------------------------------

def export_selection(*, user: User, asset_ids: Any) -> list[uuid.UUID]:
    """The user's chosen asset ids, checked: all of them theirs (else 404, whichever is not), none in
    the trash (else a 400 naming how many). Order kept, duplicates dropped."""
    ids = list(dict.fromkeys(id_list_clean(
        asset_ids, limit=MAX_SELECTION, empty="Choose at least one asset to export.",
        too_many=f"At most {MAX_SELECTION:,} assets per export; export the project instead.")))
    found: dict[uuid.UUID, Any] = {}
    for batch in _batches(ids, 1000):
        found.update(asset_list_for_user(user, include_trashed=True).filter(pk__in=batch)
                     .values_list("pk", "deleted_at"))
    if len(found) != len(ids):
        raise Http404("No such asset.")
    trashed = sum(1 for pk in ids if found[pk] is not None)
    if trashed:
        message = (f"{trashed} of the chosen assets {'is' if trashed == 1 else 'are'} in the trash; "
                   "restore them to export them.")
        raise InvalidRequest(message, code="asset_in_trash", fields={"assets": [message]})
    return ids


def export_project_ids(*, user: User, project: Project) -> list[uuid.UUID]:
    """A project's assets, oldest first, trash left out. `project` comes from project_get_for_user."""
    return list(asset_list_for_user(user).filter(project=project).order_by("created_at", "id")
                .values_list("pk", flat=True))


# --- the recipe -----------------------------------------------------------------------------------------

def redact(value: Any) -> Any:
    """A copy of JSON data without anything keyed like a credential (api_key, token, secret, …)."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items() if not (isinstance(k, str) and _SECRET_KEY.search(k))}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _json_default(value: Any) -> Any:
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def asset_recipe(asset: Asset, *, path: str | None = None) -> dict[str, Any]:
    """Everything we know about how an asset came to be and how it is organised. Expects `project`
    and `generation` selected, `tags` and `collections` prefetched (see `_load`)."""
    generation = asset.generation
    inputs = redact(generation.inputs or {}) if generation is not None else {}
    metadata = redact(asset.metadata or {})
    seed = metadata.get("seed", inputs.get("seed"))
    return {
        "path": path,
        "id": str(asset.pk),
        "name": asset.name,
        "kind": asset.kind,
        "mime": asset.mime,
        "size": asset.size,
        "sha256": asset.sha256,
        "width": asset.width,
        "height": asset.height,
        "duration": asset.duration,
        "created_at": _iso(asset.created_at),
        "source": asset.source,
        "project": {"id": str(asset.project_id), "name": asset.project.name},
        "prompt": asset.prompt,
        "negative_prompt": str(inputs.get("negative_prompt") or ""),
        "model": asset.model_id,
        "provider": asset.provider,
        "seed": seed,
        "generation": None if generation is None else {
            "id": str(generation.pk),
            "model": generation.model_id,
            "status": generation.status,
            "inputs": inputs,
            # For the whole generation, which may have made several assets.
            "credits_charged": generation.credits_charged,
            "provider_cost_usd": None if generation.provider_cost_usd is None else str(generation.provider_cost_usd),
            "created_at": _iso(generation.created_at),
            "finished_at": _iso(generation.finished_at),
        },
        "tags": sorted(t.name for t in asset.tags.all()),
        "rating": asset.rating,
        "favourite": asset.favourite,
        "notes": asset.notes,
        "parent": str(asset.parent_id) if asset.parent_id else None,
        "collections": [{"id": str(c.pk), "name": c.name} for c in asset.collections.all()],
        "metadata": metadata,
    }


def _load(user: User, ids: list[uuid.UUID], *, include_trashed: bool = False) -> dict[uuid.UUID, Asset]:
    """One batch, in three queries: assets with project and generation, their tags, their collections.
    Through the access funnel again: an asset deleted or trashed since the check is left out."""
    qs = (asset_list_for_user(user, include_trashed=include_trashed).filter(pk__in=ids).select_related("project", "generation")
          .prefetch_related("tags", Prefetch("collections", queryset=Collection.objects.filter(owner=user)
                                             .only("id", "name").order_by("name"))))
    return {a.pk: a for a in qs}


# --- names in the archive -------------------------------------------------------------------------------

def safe_member_name(name: str) -> str:
    """A file name every desktop file system accepts: no separators, reserved characters, control
    characters, trailing dots or spaces, or Windows device names; at most 150 characters and 200 bytes
    of UTF-8 (Linux file systems allow 255 bytes, and a " (2)" may follow)."""
    name = unicodedata.normalize("NFC", name or "")
    name = "".join("_" if ch in '<>:"/\\|?*' or unicodedata.category(ch)[0] == "C" else ch for ch in name)
    name = name.strip().rstrip(". ").lstrip(".") or "file"
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ext = ext[:16]
    stem = stem.strip() or "file"
    if stem.split(".")[0].lower() in _WINDOWS_RESERVED:
        stem = f"_{stem}"
    stem = stem[: 150 - len(ext) - 1]
    room = MAX_MEMBER_NAME_BYTES - len(ext.encode()) - 1
    stem = stem.encode()[:room].decode(errors="ignore")  # cut on a character boundary
    stem = stem.rstrip(". ") or "file"
    return f"{stem}.{ext}" if ext else stem


def _member_path(asset: Asset, used: set[str]) -> str:
    folder = FOLDERS.get(asset.kind, "other")
    name = safe_member_name(asset.name)
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 1
    while f"{folder}/{candidate}".lower() in used:  # unique on case-insensitive file systems too
        n += 1
        candidate = f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})"
    path = f"{folder}/{candidate}"
    used.add(path.lower())
    return path


# --- the stream -----------------------------------------------------------------------------------------

def _file_data(asset: Asset, recipe: dict[str, Any], embed: bool) -> Iterator[bytes]:
    """The stored file's bytes, opened only when the archive reaches it. A file missing from storage
    (deleted after the check) becomes an empty member, flagged `missing` in the metadata."""
    try:
        if embed:
            with open_stored(asset.file.name, asset.file.storage) as reader:
                yield from embed_stream(reader, mime=asset.mime, recipe=recipe)
        else:
            yield from stored_chunks(asset.file.name, asset.file.storage, CHUNK)
    except FileNotFoundError:
        recipe["missing"] = True


def _metadata_json(spool: Any, header: dict[str, Any]) -> Iterator[bytes]:
    opening = json.dumps(header, indent=2, ensure_ascii=False, default=_json_default)
    yield (opening[:-2] + ',\n  "assets": [').encode("utf-8")
    spool.seek(0)
    first = True
    for line in spool:
        recipe = json.loads(line)
        text = json.dumps(recipe, indent=2, ensure_ascii=False).replace("\n", "\n    ")
        yield (("\n    " if first else ",\n    ") + text).encode("utf-8")
        first = False
    yield b"\n  ]\n}\n"


def _csv_cell(value: Any) -> Any:
    # A cell starting with = + - @ (or a tab/CR) is a formula to a spreadsheet: OWASP's CSV injection
    # advice is to quote it. metadata.json keeps the exact text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_row(r: dict[str, Any]) -> list[Any]:
    generation = r.get("generation") or {}
    row = {
        **{k: r.get(k) for k in CSV_COLUMNS},
        "project_id": r["project"]["id"], "project_name": r["project"]["name"],
        "generation_id": generation.get("id"),
        "generation_inputs": json.dumps(generation["inputs"], ensure_ascii=False) if generation else "",
        "credits_charged": generation.get("credits_charged"),
        "provider_cost_usd": generation.get("provider_cost_usd"),
        "tags": "; ".join(r["tags"]),
        "collections": "; ".join(c["name"] for c in r["collections"]),
        "missing": bool(r.get("missing")),
    }
    return [_csv_cell("" if row[k] is None else row[k]) for k in CSV_COLUMNS]


def _metadata_csv(spool: Any) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    spool.seek(0)
    for n, line in enumerate(spool, 1):
        writer.writerow(_csv_row(json.loads(line)))
        if n % 200 == 0:
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode("utf-8")


def _batches(ids: list[uuid.UUID], size: int) -> Iterable[list[uuid.UUID]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def export_stream(*, user: User, asset_ids: list[uuid.UUID], embed: bool = False,
                  project: Project | None = None) -> Iterator[bytes]:
    """The ZIP's bytes, produced as they are consumed. `asset_ids` were checked by `export_selection`
    or `export_project_ids`; each batch is loaded through the access funnel again when reached."""
    archive = zipstream.ZipStream(compress_type=zipstream.ZIP_STORED)
    used: set[str] = set()
    count = 0
    with tempfile.SpooledTemporaryFile(max_size=METADATA_SPOOL, mode="w+b") as recipes:
        for batch in _batches(asset_ids, BATCH):
            assets = _load(user, batch)
            pending: list[dict[str, Any]] = []
            for pk in batch:
                asset = assets.get(pk)
                if asset is None:
                    continue
                path = _member_path(asset, used)
                recipe = asset_recipe(asset, path=path)
                recipe["embedded"] = embed and embeddable(asset.mime)
                compression = zipstream.ZIP_DEFLATED if asset.mime in DEFLATE_TYPES else zipstream.ZIP_STORED
                # A known size lets small members skip Zip64 fields; embedding changes the size.
                archive.add(_file_data(asset, recipe, recipe["embedded"]), path,
                            size=None if recipe["embedded"] else asset.size, compress_type=compression)
                pending.append(recipe)
            yield from archive.all_files()
            for recipe in pending:  # after streaming: a missing file has flagged its recipe by now
                recipes.write(json.dumps(recipe, ensure_ascii=False, default=_json_default).encode("utf-8") + b"\n")
                count += 1
        header = {
            "format": "studio-export",
            "version": 1,
            "exported_at": timezone.now().isoformat(),
            "project": {"id": str(project.pk), "name": project.name} if project is not None else None,
            "embed_metadata": embed,
            "asset_count": count,
        }
        archive.add(_metadata_json(recipes, header), "metadata.json", compress_type=zipstream.ZIP_DEFLATED)
        archive.add(_metadata_csv(recipes), "metadata.csv", compress_type=zipstream.ZIP_DEFLATED)
        yield from archive.finalize()


def export_filename(project: Project | None) -> str:
    stamp = timezone.localdate().isoformat()
    return safe_member_name(f"{project.name if project is not None else 'studio-export'}-{stamp}.zip")


def export_response(*, user: User, asset_ids: list[uuid.UUID], embed: bool = False,
                    project: Project | None = None) -> StreamingHttpResponse:
    response = StreamingHttpResponse(export_stream(user=user, asset_ids=asset_ids, embed=embed, project=project),
                                     content_type="application/zip")
    response["Content-Disposition"] = content_disposition(export_filename(project))
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    # Proxies such as nginx would otherwise buffer the whole archive before sending any of it.
    response["X-Accel-Buffering"] = "no"
    return response


def asset_embedded_response(*, user: User, asset: Asset, inline: bool = False) -> StreamingHttpResponse:
    """One asset's file with its recipe embedded (single downloads with ?embed=1). `asset` comes from
    asset_get_for_user; it may be in the trash (its page still offers the download)."""
    recipe = asset_recipe(_load(user, [asset.pk], include_trashed=True).get(asset.pk) or asset)

    def body() -> Iterator[bytes]:
        with open_stored(asset.file.name, asset.file.storage) as reader:
            yield from embed_stream(reader, mime=asset.mime, recipe=recipe)

    response = StreamingHttpResponse(body(), content_type=safe_mime(asset.mime))
    protect(response, filename=asset.name, inline=inline)
    return response


# --- short-lived links (for browsers, which cannot save a POST's response to disk from script) ----------

def export_link_create(*, user: User, asset_ids: list[uuid.UUID], embed: bool) -> tuple[str, datetime]:
    """A random token naming this user's checked selection, kept in the cache for EXPORT_LINK_SECONDS.
    The token is the only credential of the GET (a browser navigating to it sends no API token)."""
    token = secrets.token_urlsafe(32)
    seconds = settings.EXPORT_LINK_SECONDS
    cache.set(f"assets-export:{token}", {"user": user.pk, "assets": [str(a) for a in asset_ids], "embed": embed},
              timeout=seconds)
    return token, timezone.now() + timedelta(seconds=seconds)


def export_link_resolve(token: str) -> tuple[User, list[uuid.UUID], bool]:
    """The user, the selection (checked again: assets may have moved to the trash or been deleted
    since) and the embed flag behind a link; 404 when it expired or never existed."""
    entry = cache.get(f"assets-export:{token}") if re.fullmatch(r"[A-Za-z0-9_\-]{20,100}", token or "") else None
    if not entry:
        raise Http404("This export link has expired.")
    user = get_user_model().objects.filter(pk=entry["user"], is_active=True).first()
    if user is None:
        raise Http404("This export link has expired.")
    return user, export_selection(user=user, asset_ids=entry["assets"]), bool(entry["embed"])
