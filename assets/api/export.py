"""Export endpoints: a project or a selection of assets as a streamed ZIP (assets/sharing/export.py)."""

from __future__ import annotations

from django.http import HttpResponseBase
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assets.sharing.export import (
    MAX_SELECTION,
    export_link_create,
    export_link_resolve,
    export_project_ids,
    export_response,
    export_selection,
)
from projects.selectors import project_get_for_user

ZIP = {(200, "application/zip"): OpenApiTypes.BINARY}
EMBED = OpenApiParameter("embed", bool, description="Write each image's recipe into the file itself (PNG "
                         "text chunks, XMP in JPEG and WebP). Stored originals are never modified.")


class AssetExportRequestSerializer(serializers.Serializer):
    assets = serializers.ListField(child=serializers.UUIDField(), allow_empty=False, max_length=MAX_SELECTION,
                                   help_text="Ids of the assets to export: all yours, none in the trash.")
    embed_metadata = serializers.BooleanField(default=False, help_text="Embed each image's recipe in the file.")
    link = serializers.BooleanField(default=False, help_text="Answer with a short-lived GET URL to the ZIP "
                                    "instead of the ZIP itself (for browsers).")


class ExportLinkSerializer(serializers.Serializer):
    url = serializers.URLField(read_only=True, help_text="GET it (no token needed) before it expires.")
    expires_at = serializers.DateTimeField(read_only=True)


class ProjectExportView(APIView):
    """A project's assets as one ZIP."""

    @extend_schema(parameters=[EMBED], responses=ZIP,
                   summary="Export a project as a ZIP (files, metadata.json, metadata.csv), streamed")
    def get(self, request: Request, project_id: str) -> HttpResponseBase:
        project = project_get_for_user(request.user, project_id)
        return export_response(user=request.user, asset_ids=export_project_ids(user=request.user, project=project),
                               embed=request.query_params.get("embed") in ("1", "true"), project=project)


class AssetExportView(APIView):
    """A selection of assets as one ZIP."""

    @extend_schema(request=AssetExportRequestSerializer,
                   responses={**ZIP, 201: ExportLinkSerializer},
                   summary="Export assets as a ZIP, streamed; or, with link=true, a short-lived URL to it")
    def post(self, request: Request) -> HttpResponseBase:
        data = AssetExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = export_selection(user=request.user, asset_ids=data.validated_data["assets"])
        embed = data.validated_data["embed_metadata"]
        if data.validated_data["link"]:
            token, expires_at = export_link_create(user=request.user, asset_ids=ids, embed=embed)
            url = request.build_absolute_uri(reverse("asset-export-link", kwargs={"token": token}))
            return Response(ExportLinkSerializer({"url": url, "expires_at": expires_at}).data,
                            status=status.HTTP_201_CREATED)
        return export_response(user=request.user, asset_ids=ids, embed=embed)


class ExportLinkView(APIView):
    """The ZIP behind a link from POST /api/v1/assets/export with link=true. The link is the credential:
    no API token needed, valid EXPORT_LINK_SECONDS, for its creator's assets only."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(auth=[], responses={
        **ZIP, 404: OpenApiResponse(description="The link expired or never existed.")},
        summary="Download an export through its short-lived link")
    def get(self, request: Request, token: str) -> HttpResponseBase:
        user, ids, embed = export_link_resolve(token)
        return export_response(user=user, asset_ids=ids, embed=embed)
