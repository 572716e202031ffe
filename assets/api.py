from __future__ import annotations

import django_filters
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from assets.inspection import RefusedFile
from assets.models import Asset, AssetKind
from assets.selectors import asset_get_for_user, asset_list_for_user
from assets.services import asset_create, asset_download_url
from config.errors import InvalidRequest
from config.pagination import CursorPagination
from projects.filters import ProjectScopedFilterSet, filter_or_400
from projects.selectors import project_get_for_user


class AssetSerializer(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project_id")
    generation = serializers.UUIDField(source="generation_id", allow_null=True)
    parent = serializers.UUIDField(source="parent_id", allow_null=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Asset
        fields = ["id", "project", "kind", "name", "mime", "size", "sha256", "width", "height", "duration",
                  "source", "generation", "parent", "metadata", "created_at", "download_url"]
        # Output only. Read-only fields also carry no database-dependent bounds into the schema.
        read_only_fields = fields

    def get_download_url(self, obj: Asset) -> str:
        return asset_download_url(asset=obj, request=self.context.get("request"))


class AssetUploadSerializer(serializers.Serializer):
    project = serializers.UUIDField()
    file = serializers.FileField(allow_empty_file=False)


class AssetFilter(ProjectScopedFilterSet):
    kind = django_filters.ChoiceFilter(choices=AssetKind.choices)

    class Meta:
        model = Asset
        fields = ["project", "kind"]


class AssetViewSet(viewsets.ViewSet):
    """Uploaded and generated files."""

    lookup_value_converter = "uuid"

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(parameters=[OpenApiParameter("project", OpenApiTypes.UUID),
                               OpenApiParameter("kind", str, enum=AssetKind.values)],
                   responses=AssetSerializer(many=True))
    def list(self, request: Request) -> Response:
        qs = filter_or_400(AssetFilter, request, asset_list_for_user(request.user))
        paginator = CursorPagination()
        paginator.ordering = ("-created_at", "-id")
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(AssetSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(responses=AssetSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(AssetSerializer(asset_get_for_user(request.user, pk), context={"request": request}).data)

    @extend_schema(request={"multipart/form-data": AssetUploadSerializer}, responses={201: AssetSerializer},
                   summary="Upload a file; its type is decided by its content")
    def create(self, request: Request) -> Response:
        data = AssetUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_get_for_user(request.user, data.validated_data["project"], write=True)
        upload = data.validated_data["file"]
        try:
            asset = asset_create(project=project, fh=upload, name=upload.name, size=upload.size)
        except RefusedFile as exc:
            raise InvalidRequest(exc.message, code=exc.code, fields={"file": [exc.message]})
        return Response(AssetSerializer(asset, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
                   summary="Download the file (as an attachment)")
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> FileResponse:
        asset = asset_get_for_user(request.user, pk)
        response = FileResponse(asset.file.open("rb"), as_attachment=request.query_params.get("inline") != "1"
                                or not asset.mime.startswith(("image/", "video/", "audio/")),
                                filename=asset.name, content_type=asset.mime)
        # User files are never interpreted by the browser as anything but their sniffed type, and
        # never framed or scripted from our origin.
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, max-age=3600"
        return response
