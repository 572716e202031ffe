"""The URLs an asset is reached by: its routes' paths (reversed once per route, not once per asset),
absolute URLs for API bodies, the download URL (presigned on S3), the versioned preview URLs, and a
share link's public URL. Building a URL decides no access: the route behind it checks that."""

from __future__ import annotations

import functools
import hashlib
import uuid
from typing import TYPE_CHECKING, Any, cast

from django.urls import get_script_prefix, get_urlconf, reverse

from assets.models import PreviewStatus
from assets.storage import presigned_url, presigns

if TYPE_CHECKING:
    from assets.models import Asset, ShareLink

# A preview's size, as the routes name it → the Asset field that holds its file.
SIZES = {"small": "thumb_small", "large": "thumb_large", "preview": "preview"}

_PK = "00000000-0000-4000-8000-000000000000"


@functools.lru_cache(maxsize=64)
def _path_template(name: str, urlconf: Any, prefix: str, kwargs: tuple[tuple[str, str], ...]) -> str:
    return reverse(name, urlconf=urlconf, kwargs={"pk": _PK, **dict(kwargs)})


def asset_path(name: str, pk: uuid.UUID | str, **kwargs: str) -> str:
    """reverse(name, kwargs={"pk": pk, **kwargs}) for an asset's routes, without resolving the URL again
    for every asset of a page: the path is reversed once per route with a stand-in id, which is then
    replaced (a gallery page of 50 builds 150 of these)."""
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
    storage = asset.file.storage
    if presigns(storage):
        # Typed str | None by the stubs; every asset row has its file.
        return presigned_url(storage, cast(str, asset.file.name), filename=asset.name, mime=asset.mime, inline=inline)
    return absolute_url(request, asset_path("asset-download", asset.pk) + ("?inline=1" if inline else ""))


def preview_version(name: str) -> str:
    """The `?v=` of a preview URL: a preview's file name carries a digest of its content, so a URL with
    this version names immutable bytes and may be cached for a year."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def asset_preview_urls(asset: Asset, *, api: bool = False) -> dict[str, str | None]:
    """Versioned (immutable) URLs of an asset's ready previews by size, None where there is none: for
    templates (the web route) and serializers (`api=True`)."""
    urls: dict[str, str | None] = {}
    for size, name in SIZES.items():
        field = getattr(asset, name)
        if asset.preview_status != PreviewStatus.READY or not field.name:
            urls[size] = None
            continue
        if api:
            path = asset_path("asset-thumbnail", asset.pk) + f"?size={size}&"
        else:
            path = asset_path("asset-preview-file", asset.pk, size=size) + "?"
        urls[size] = f"{path}v={preview_version(field.name)}"
    return urls


def share_url(share: ShareLink, request: Any = None) -> str:
    """A share link's public page (the token in it is the secret: only the link's owner is shown it)."""
    return absolute_url(request, reverse("studio:shared", kwargs={"token": share.token}))
