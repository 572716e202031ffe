"""GET /api/v1/storage: how much a user stores, against their plan's quota, and per project."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assets.uploads.quota import storage_summary_for_user


class StoragePlanSerializer(serializers.Serializer):
    code = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)


class StorageProjectSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    name = serializers.CharField(read_only=True)
    used = serializers.IntegerField(read_only=True, help_text="Bytes of this project's assets, trash included.")
    assets = serializers.IntegerField(read_only=True, help_text="How many assets, trash included.")


class StorageSerializer(serializers.Serializer):
    used = serializers.IntegerField(read_only=True, help_text="Bytes of all your assets, trash included until "
                                                              "it is purged.")
    limit = serializers.IntegerField(read_only=True, allow_null=True,
                                     help_text="Your plan's quota in bytes; null is unlimited.")
    available = serializers.IntegerField(read_only=True, allow_null=True,
                                         help_text="Bytes left before uploads are refused; null is unlimited.")
    over_quota = serializers.BooleanField(read_only=True, help_text=(
        "True when the quota is used up (reached, or passed by generated outputs, which are never refused): "
        "uploads and new jobs are refused until space is freed."))
    percent = serializers.IntegerField(read_only=True, allow_null=True,
                                       help_text="used / limit, 0-100, rounded down (100 is full).")
    plan = StoragePlanSerializer(read_only=True)
    projects = StorageProjectSerializer(many=True, read_only=True)


class StorageView(APIView):
    @extend_schema(responses=StorageSerializer, summary="Storage used, the plan's quota, and use per project")
    def get(self, request: Request) -> Response:
        return Response(StorageSerializer(storage_summary_for_user(request.user)).data)
