"""Share links over the API: /api/v1/shares (list, create), /api/v1/shares/{id}, /api/v1/shares/{id}/revoke.

Only the link's owner reaches these, and only they ever see the token and the URL built from it."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from assets.links import share_url
from assets.models import ShareLink, ShareTarget
from assets.sharing.shares import (
    MAX_PASSWORD,
    share_create,
    share_get_for_user,
    share_list_for_user,
    share_revoke,
    share_status,
    share_title,
)
from core.pagination import CursorPagination


class ShareSerializer(serializers.ModelSerializer):
    asset = serializers.UUIDField(source="asset_id", allow_null=True)
    collection = serializers.UUIDField(source="collection_id", allow_null=True)
    project = serializers.UUIDField(source="project_id", allow_null=True)
    title = serializers.SerializerMethodField(help_text="The name of what is shared.")
    has_password = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField(help_text="live, expired, revoked, or trashed (an asset link to "
                                                         "an asset in the trash, live again if restored).")
    url = serializers.SerializerMethodField(help_text="The public link. Anyone with it can view.")

    class Meta:
        model = ShareLink
        fields = ["id", "target", "asset", "collection", "project", "title", "show_prompt", "has_password",
                  "expires_at", "revoked_at", "status", "view_count", "created_at", "token", "url"]
        read_only_fields = fields

    def get_title(self, obj: ShareLink) -> str:
        return share_title(obj)

    def get_has_password(self, obj: ShareLink) -> bool:
        return bool(obj.password)

    def get_status(self, obj: ShareLink) -> str:
        return share_status(obj)

    def get_url(self, obj: ShareLink) -> str:
        return share_url(obj, self.context.get("request"))


class ShareCreateSerializer(serializers.Serializer):
    target = serializers.ChoiceField(choices=ShareTarget.choices)
    target_id = serializers.UUIDField(help_text="The asset's, collection's or project's id.")
    show_prompt = serializers.BooleanField(default=False, help_text="Show each asset's prompt on the shared page.")
    password = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=MAX_PASSWORD,
                                     trim_whitespace=False, help_text="Optional; visitors must enter it.")
    expires_at = serializers.DateTimeField(required=False, allow_null=True,
                                           help_text="Optional; within a year. After it the link is a 404.")


@extend_schema(tags=["shares"])
class ShareViewSet(viewsets.ViewSet):
    """Read-only public links to your assets, collections and projects."""

    lookup_value_converter = "uuid"
    pagination_class = CursorPagination  # the schema documents the page object from it

    @extend_schema(parameters=[OpenApiParameter("live", OpenApiTypes.BOOL, description="Only links that work now.")],
                   responses=ShareSerializer(many=True), summary="Your share links, newest first")
    def list(self, request: Request) -> Response:
        qs = share_list_for_user(request.user, live=request.query_params.get("live") in ("1", "true"))
        paginator = CursorPagination()
        paginator.ordering = ("-created_at", "-id")
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ShareSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(request=ShareCreateSerializer, responses={201: ShareSerializer}, summary="Create a share link")
    def create(self, request: Request) -> Response:
        data = ShareCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        share = share_create(user=request.user, **data.validated_data)
        return Response(ShareSerializer(share, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ShareSerializer, summary="One of your share links")
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ShareSerializer(share_get_for_user(request.user, pk), context={"request": request}).data)

    @extend_schema(request=None, responses=ShareSerializer, summary="Revoke a link: it is a 404 from now on")
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        share = share_revoke(user=request.user, share_id=pk)
        return Response(ShareSerializer(share, context={"request": request}).data)
