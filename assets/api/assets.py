from __future__ import annotations

from typing import Any

from django.http import FileResponse, HttpResponseBase, HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from assets.library.gallery import ASPECTS, MAX_PAGE_SIZE, PAGE_SIZE, SORTS
from assets.library.organise import (
    BULK_ACTIONS,
    MAX_BULK,
    MAX_TAGS_PER_ASSET,
    asset_restore,
    asset_trash,
    asset_update,
    assets_bulk,
)
from assets.library.selectors import asset_gallery_for_user, asset_get_for_user, tag_list_for_user
from assets.links import absolute_url, asset_download_url, asset_preview_urls
from assets.models import Asset, AssetKind, AssetSource
from assets.services import asset_create
from assets.storage import may_inline, presigns, protect, safe_mime
from assets.uploads.inspection import RefusedFile
from core.errors import InvalidRequest
from core.parsers import StudioJSONParser
from projects.selectors import project_get_for_user


class AssetSerializer(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project_id")
    generation = serializers.UUIDField(source="generation_id", allow_null=True)
    parent = serializers.UUIDField(source="parent_id", allow_null=True)
    download_url = serializers.SerializerMethodField()
    tags = serializers.SerializerMethodField()
    thumbnail_small_url = serializers.SerializerMethodField()
    thumbnail_large_url = serializers.SerializerMethodField()

    class Meta:
        model = Asset
        fields = ["id", "project", "kind", "name", "mime", "size", "sha256", "width", "height", "duration",
                  "source", "generation", "parent", "metadata", "created_at", "download_url",
                  "prompt", "model_id", "provider", "aspect", "tags", "favourite", "rating", "notes",
                  "deleted_at", "preview_status", "blurhash", "thumbnail_small_url", "thumbnail_large_url"]
        # Output only. Read-only fields also carry no database-dependent bounds into the schema.
        read_only_fields = fields

    def get_download_url(self, obj: Asset) -> str:
        return asset_download_url(asset=obj, request=self.context.get("request"))

    def get_tags(self, obj: Asset) -> list[str]:
        names = getattr(obj, "tag_names", None)  # the gallery's list loads them in one query
        return names if names is not None else [tag.name for tag in obj.tags.all()]

    def _thumbnail(self, obj: Asset, size: str) -> str | None:
        urls = getattr(obj, "_api_thumbnails", None)
        if urls is None:
            urls = obj._api_thumbnails = asset_preview_urls(obj, api=True)
        path = urls[size]
        return absolute_url(self.context.get("request"), path) if path else path

    def get_thumbnail_small_url(self, obj: Asset) -> str | None:
        """The small WebP thumbnail once the preview is made (preview_status "ready"), else null."""
        return self._thumbnail(obj, "small")

    def get_thumbnail_large_url(self, obj: Asset) -> str | None:
        return self._thumbnail(obj, "large")

    def to_representation(self, instance: Asset) -> dict[str, Any]:
        """The fields declared above, read straight off the model where that gives what DRF's field
        would: DRF's field-by-field path costs more than the gallery's page query at fifty rows
        (bench/gallery.py). A field without a fast reader goes through DRF as usual; a test checks that
        both give the same representation."""
        fast = self._fast_readers()
        out: dict[str, Any] = {}
        for field in self._readable_fields:
            reader = fast.get(field.field_name)
            if reader is not None:
                out[field.field_name] = reader(instance)
                continue
            attribute = field.get_attribute(instance)
            out[field.field_name] = None if attribute is None else field.to_representation(attribute)
        return out

    def _fast_readers(self) -> dict[str, Any]:
        readers = getattr(self, "_fast_readers_cache", None)
        if readers is not None:
            return readers
        moment = self.fields["created_at"].to_representation

        def uuid_or_none(name: str) -> Any:
            return lambda a: None if getattr(a, name) is None else str(getattr(a, name))

        def number_or_none(name: str) -> Any:
            return lambda a: None if getattr(a, name) is None else float(getattr(a, name))

        readers = {name: (lambda a, name=name: getattr(a, name)) for name in (
            "kind", "name", "mime", "size", "sha256", "width", "height", "source", "metadata", "prompt", "model_id",
            "provider", "favourite", "rating", "notes", "preview_status", "blurhash")}
        readers.update({
            "id": lambda a: str(a.pk), "project": lambda a: str(a.project_id),
            "generation": uuid_or_none("generation_id"), "parent": uuid_or_none("parent_id"),
            "duration": number_or_none("duration"), "aspect": number_or_none("aspect"),
            "created_at": lambda a: moment(a.created_at),
            "deleted_at": lambda a: None if a.deleted_at is None else moment(a.deleted_at),
            "download_url": self.get_download_url, "tags": self.get_tags,
            "thumbnail_small_url": self.get_thumbnail_small_url, "thumbnail_large_url": self.get_thumbnail_large_url,
        })
        self._fast_readers_cache = readers
        return readers


@extend_schema_serializer(many=False)  # the page object itself, not a list of pages
class AssetPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, read_only=True, help_text="The next page, or null at the end.")
    previous = serializers.URLField(allow_null=True, read_only=True,
                                    help_text="The page before, for a page reached by a cursor.")
    results = AssetSerializer(many=True, read_only=True)


class AssetUploadSerializer(serializers.Serializer):
    project = serializers.UUIDField()
    file = serializers.FileField(allow_empty_file=False)
    keep_location = serializers.BooleanField(default=False, help_text=(
        "Keep the GPS location in a photo's EXIF/XMP; by default it is removed (docs/assets/uploads.md)."))


class AssetUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=255)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    rating = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=5,
                                      help_text="1-5; null or 0 clears it.")
    favourite = serializers.BooleanField(required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False,
                                 max_length=MAX_TAGS_PER_ASSET, help_text="Replaces the asset's tags.")


class AssetBulkSerializer(serializers.Serializer):
    assets = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=MAX_BULK)
    action = serializers.ChoiceField(choices=BULK_ACTIONS)
    project = serializers.UUIDField(required=False, allow_null=True, help_text="For move: the project to move to.")
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False,
                                 max_length=MAX_TAGS_PER_ASSET,
                                 help_text="For tag and untag. An asset carries at most 50 tags.")
    rating = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=5,
                                      help_text="For rate: 1-5, or null or 0 to clear.")


class AssetBulkResultSerializer(serializers.Serializer):
    action = serializers.CharField(read_only=True)
    count = serializers.IntegerField(read_only=True, help_text="How many assets the action changed.")


class TagSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    asset_count = serializers.IntegerField(read_only=True, help_text="Assets outside the trash with this tag.")


GALLERY_PARAMETERS = [
    OpenApiParameter("project", OpenApiTypes.UUID, description="Only this project's assets."),
    OpenApiParameter("kind", str, enum=AssetKind.values),
    OpenApiParameter("source", str, enum=AssetSource.values),
    OpenApiParameter("model", str, description="The model id that made it, e.g. `local/sketch`."),
    OpenApiParameter("provider", str),
    OpenApiParameter("tag", str, many=True, explode=True,
                     description="Repeat for several: `tag=a&tag=b` lists assets carrying all of them."),
    OpenApiParameter("favourite", bool),
    OpenApiParameter("rating_gte", int, description="Minimum rating, 1-5 (unrated assets are left out)."),
    OpenApiParameter("created_after", str, description="A date (inclusive, the whole day) or ISO 8601 date-time."),
    OpenApiParameter("created_before", str,
                     description="A date (inclusive, the whole day) or ISO 8601 date-time (exclusive)."),
    OpenApiParameter("aspect", str, enum=[value for value, _ in ASPECTS],
                     description="Square is within 5% of 1:1; assets without a frame size are left out."),
    OpenApiParameter("aspect_min", float, description="Minimum width / height."),
    OpenApiParameter("aspect_max", float, description="Maximum width / height."),
    OpenApiParameter("q", str, description="Full-text search over names, prompts, notes and tags: words are "
                                           "ANDed; \"a phrase\", `or` and `-word` work as in web search."),
    OpenApiParameter("trashed", bool, description="true lists the trash instead of the gallery."),
    OpenApiParameter("sort", str, enum=list(SORTS), description="newest (default), oldest or rating."),
    OpenApiParameter("cursor", str, description="From `next` or `previous` of a page of the same sort."),
    OpenApiParameter("page_size", int, description=f"Default {PAGE_SIZE}, at most {MAX_PAGE_SIZE}."),
]


class AssetViewSet(viewsets.ViewSet):
    """Uploaded and generated files."""

    lookup_value_converter = "uuid"

    # JSON for changes and bulk actions; multipart for uploads.
    parser_classes = [StudioJSONParser, MultiPartParser, FormParser]

    @extend_schema(parameters=GALLERY_PARAMETERS, responses=AssetPageSerializer,
                   summary="The gallery: filtered, searched, sorted, in keyset pages (no total count)")
    def list(self, request: Request) -> Response:
        page = asset_gallery_for_user(request.user, request.query_params)
        url = request.build_absolute_uri()

        def link(token: str | None) -> str | None:
            return replace_query_param(url, "cursor", token) if token else None

        return Response({"next": link(page.next_cursor), "previous": link(page.previous_cursor),
                         "results": AssetSerializer(page.assets, many=True, context={"request": request}).data})

    @extend_schema(responses=AssetSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(AssetSerializer(asset_get_for_user(request.user, pk), context={"request": request}).data)

    @extend_schema(request={"application/json": AssetUpdateSerializer}, responses=AssetSerializer,
                   summary="Rename, annotate, rate, favourite or retag an asset")
    def partial_update(self, request: Request, pk: str) -> Response:
        data = AssetUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        asset = asset_update(user=request.user, asset_id=pk, **data.validated_data)
        return Response(AssetSerializer(asset, context={"request": request}).data)

    @extend_schema(responses={204: None}, summary="Move an asset to the trash (restorable for 30 days)")
    def destroy(self, request: Request, pk: str) -> Response:
        asset = asset_get_for_user(request.user, pk)
        if asset.deleted_at is None:  # already in the trash: nothing to do, the same answer
            asset_trash(user=request.user, asset_id=asset.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=AssetSerializer, summary="Take an asset out of the trash")
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str) -> Response:
        asset_restore(user=request.user, asset_id=pk)
        return Response(AssetSerializer(asset_get_for_user(request.user, pk), context={"request": request}).data)

    @extend_schema(request={"application/json": AssetBulkSerializer}, responses=AssetBulkResultSerializer,
                   summary="One action on many assets, all or nothing")
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        data = AssetBulkSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        count = assets_bulk(user=request.user, asset_ids=values["assets"], action=values["action"],
                            project_id=values.get("project"), tags=values.get("tags"), rating=values.get("rating"))
        return Response({"action": values["action"], "count": count})

    @extend_schema(request={"multipart/form-data": AssetUploadSerializer}, responses={201: AssetSerializer},
                   summary="Upload a file; its type is decided by its content")
    def create(self, request: Request) -> Response:
        data = AssetUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_get_for_user(request.user, data.validated_data["project"], write=True)
        upload = data.validated_data["file"]
        try:
            asset = asset_create(project=project, fh=upload, name=upload.name, size=upload.size,
                                 keep_location=data.validated_data["keep_location"])
        except RefusedFile as exc:
            raise InvalidRequest(exc.message, code=exc.code, fields={"file": [exc.message]})
        return Response(AssetSerializer(asset, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[
        OpenApiParameter("inline", bool, description="Show a picture, video or audio in the page rather than "
                         "save it (anything else stays an attachment)."),
        OpenApiParameter("embed", bool, description="Write the generation recipe into the file (PNG text "
                         "chunks, XMP in JPEG and WebP); other types come unchanged. The stored file is "
                         "never modified."),
    ], responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                  302: OpenApiResponse(description="On S3 storage: a presigned URL to the object.")},
        summary="Download the file (as an attachment)")
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> HttpResponseBase:
        from assets.sharing.export import asset_embedded_response  # zipstream and the embedders load on first use

        asset = asset_get_for_user(request.user, pk)
        inline = request.query_params.get("inline") in ("1", "true") and may_inline(asset.mime)
        if request.query_params.get("embed") in ("1", "true"):
            return asset_embedded_response(user=request.user, asset=asset, inline=inline)
        if presigns(asset.file.storage):
            # S3 serves the bytes itself; the signed URL fixes Content-Disposition and Content-Type.
            return HttpResponseRedirect(asset_download_url(asset=asset, request=request, inline=inline))
        # User files are never interpreted by the browser as anything but their sniffed type, and
        # never framed or scripted from our origin.
        return protect(FileResponse(asset.file.open("rb"), content_type=safe_mime(asset.mime)),
                       filename=asset.name, inline=inline)


class TagViewSet(viewsets.ViewSet):
    """The user's tags, for the gallery's filters."""

    @extend_schema(responses=TagSerializer(many=True), summary="Your tags with how many assets carry each")
    def list(self, request: Request) -> Response:
        return Response(TagSerializer(tag_list_for_user(request.user, with_counts=True), many=True).data)
