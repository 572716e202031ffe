"""Serving an asset's previews (thumbnails, poster frame, waveform, PDF page) to whoever may see the asset.

Two entry points share `preview_response`: the API (`GET /api/v1/assets/{id}/thumbnail?size=`, Bearer or
session, counted against the plan's API rate like any call) and the web app's
`GET /previews/{id}/{size}` (session only, not rate limited: a gallery page shows fifty at once). Other
code that has already decided access (a share link's page) can call `preview_response` itself.

A preview's file name carries a digest of its content, so `?v=<version>` URLs from `assets.links.asset_preview_urls`
are immutable and cached for a year; an unversioned URL revalidates with its ETag (a 304 costs no file
read). With S3 as the storage the response is a redirect to a presigned URL instead.
"""

from __future__ import annotations

import uuid

from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.http import require_safe
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from assets.library.selectors import asset_get_for_user
from assets.links import SIZES, preview_version
from assets.models import Asset, PreviewStatus
from assets.previews.service import content_type_for
from assets.storage import presigned_url, presigns, protect
from core.errors import InvalidRequest, ServiceError

IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"


class PreviewUnavailable(ServiceError):
    """404 with a reason the client can act on: wait (pending), or show the kind's icon (the rest)."""

    http_status = 404


def _preview_field(asset: Asset, size: str) -> FieldFile:
    if size not in SIZES:
        raise InvalidRequest(f"size must be one of {', '.join(SIZES)}.", code="invalid",
                             fields={"size": [f"Choose one of {', '.join(SIZES)}."]})
    if asset.preview_status == PreviewStatus.PENDING:
        raise PreviewUnavailable("The preview is being made; try again in a moment.", code="preview_pending",
                                 extra={"preview_status": asset.preview_status})
    field = getattr(asset, SIZES[size])
    if asset.preview_status != PreviewStatus.READY or not field.name:
        message = asset.preview_error if asset.preview_status == PreviewStatus.FAILED else (
            "This asset has no still of this size." if asset.preview_status == PreviewStatus.READY
            else "There is nothing to preview in this kind of file.")
        raise PreviewUnavailable(message or "No preview.", code="no_preview",
                                 extra={"preview_status": asset.preview_status})
    return field


def preview_response(request: HttpRequest, asset: Asset, size: str) -> HttpResponse:
    """The preview file of `size` for an asset the caller has already been allowed to see."""
    field = _preview_field(asset, size)
    version = preview_version(field.name)
    content_type = content_type_for(field.name)
    cache = IMMUTABLE if request.GET.get("v") == version else REVALIDATE
    storage = field.storage
    stem = asset.name.rsplit(".", 1)[0] if "." in asset.name else asset.name
    filename = f"{stem}-{size}.{field.name.rsplit('.', 1)[-1]}"
    if presigns(storage):
        # Short-lived and signed with our Content-Type and Content-Disposition; the object store serves it.
        response: HttpResponse = HttpResponseRedirect(
            presigned_url(storage, field.name, filename=filename, mime=content_type, inline=True))
        response["Cache-Control"] = "private, max-age=300"  # well inside the presigned URL's expiry
        return response
    etag = f'"{version}"'
    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponse(status=304)
    else:
        response = FileResponse(field.open("rb"), content_type=content_type)
    # The download's stance: served as exactly this image type, never sniffed, run or framed as a page.
    protect(response, filename=filename, inline=True)
    response["ETag"] = etag
    response["Cache-Control"] = cache
    return response


class AssetThumbnailView(APIView):
    """An asset's preview image."""

    @extend_schema(
        operation_id="assets_thumbnail",
        tags=["assets"],
        summary="An asset's thumbnail, poster frame, waveform or page render",
        description="`small` and `large` are WebP thumbnails (256 and 1024 px on the long side, never upscaled); "
                    "`preview` is the full-size still of a video (poster frame), audio (waveform, PNG) or PDF "
                    "(first page). 404 `preview_pending` while the worker makes it, 404 `no_preview` when there is "
                    "none (a mesh, plain text, a file that failed to decode). With S3 storage: a 302 to a "
                    "presigned URL.",
        parameters=[OpenApiParameter("size", str, enum=list(SIZES), default="small"),
                    OpenApiParameter("v", str, description="The version from a previous URL: cached as immutable.")],
        responses={(200, "image/webp"): OpenApiTypes.BINARY, (200, "image/png"): OpenApiTypes.BINARY,
                   302: OpenApiResponse(description="Redirect to a presigned URL (S3 storage)."),
                   304: OpenApiResponse(description="Not modified (ETag)."),
                   404: OpenApiResponse(description="No such asset, or no preview (see error.code).")},
    )
    def get(self, request: Request, pk: uuid.UUID) -> HttpResponse:
        asset = asset_get_for_user(request.user, pk)
        return preview_response(request, asset, request.query_params.get("size", "small"))


@require_safe
def asset_preview_file(request: HttpRequest, pk: uuid.UUID, size: str) -> HttpResponse:
    """The web app's route: the session's user only; anyone else (signed out included) gets a 404."""
    if not request.user.is_authenticated:
        raise Http404("No such asset.")
    asset = asset_get_for_user(request.user, pk)
    try:
        return preview_response(request, asset, size)
    except ServiceError as exc:
        response = HttpResponse(exc.message, status=exc.http_status if exc.http_status == 404 else 400,
                                content_type="text/plain; charset=utf-8")
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, no-store"
        if exc.code == "preview_pending":
            response["Retry-After"] = "2"
        return response
