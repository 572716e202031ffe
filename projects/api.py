from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from core.pagination import CursorPagination
from orchestration.projects import project_delete, project_update
from projects.models import Project
from projects.selectors import project_get_for_user, project_list_for_user
from projects.services import project_create


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "description", "tags", "archived", "fallback_models", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class ProjectWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tags = serializers.ListField(child=serializers.CharField(max_length=40), required=False, default=list)
    archived = serializers.BooleanField(required=False)
    fallback_models = serializers.ListField(child=serializers.CharField(max_length=120), required=False,
                                            help_text="Default fallback models for this project's generations.")


class ProjectViewSet(viewsets.ViewSet):
    """Projects hold everything: assets, generations, budgets."""

    lookup_value_converter = "uuid"
    pagination_class = CursorPagination  # the schema documents the page object from it

    @extend_schema(responses=ProjectSerializer(many=True))
    def list(self, request: Request) -> Response:
        paginator = CursorPagination()
        paginator.ordering = "-updated_at"
        qs = project_list_for_user(request.user)
        if request.query_params.get("archived") in ("true", "false"):
            qs = qs.filter(archived=request.query_params["archived"] == "true")
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ProjectSerializer(page, many=True).data)

    @extend_schema(request=ProjectWriteSerializer, responses={201: ProjectSerializer})
    def create(self, request: Request) -> Response:
        data = ProjectWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(owner=request.user, name=data.validated_data["name"],
                                 description=data.validated_data["description"], tags=data.validated_data["tags"])
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ProjectSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ProjectSerializer(project_get_for_user(request.user, pk)).data)

    @extend_schema(request=ProjectWriteSerializer, responses=ProjectSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        project = project_get_for_user(request.user, pk, write=True)
        data = ProjectWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = {k: v for k, v in data.validated_data.items() if k in request.data}
        return Response(ProjectSerializer(project_update(project=project, **changes)).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        project_delete(project=project_get_for_user(request.user, pk, write=True))
        return Response(status=status.HTTP_204_NO_CONTENT)
