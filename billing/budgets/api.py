"""Budgets and notifications over the API: a project's budget, your own monthly cap, and the in-app
notifications budget alerts leave."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.budgets.services import (
    LIMIT_MAX,
    budget_clear,
    budget_get,
    budget_status,
    notification_list_for_user,
    notification_mark_read,
)
from billing.models import BudgetPeriod, Notification
from core.errors import ServiceError
from core.pagination import CursorPagination
from orchestration.budgets import budget_set
from projects.selectors import project_get_for_user


class BudgetSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    scope = serializers.ChoiceField(choices=["project", "user"])
    project = serializers.UUIDField(allow_null=True)
    period = serializers.ChoiceField(choices=BudgetPeriod.values)
    period_start = serializers.DateField(help_text="The 1st of the month for monthly budgets.")
    limit = serializers.IntegerField()
    spent = serializers.IntegerField(help_text="Credits charged this period.")
    held = serializers.IntegerField(help_text="Credits on hold for jobs still running.")
    used = serializers.IntegerField(help_text="spent + held: what counts against the limit.")
    remaining = serializers.IntegerField()
    percent = serializers.IntegerField()
    alerts = serializers.ListField(child=serializers.IntegerField(), help_text="Thresholds alerted this period.")


class BudgetWriteSerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=0, max_value=LIMIT_MAX, help_text="Credits per period.")
    period = serializers.ChoiceField(choices=BudgetPeriod.values, default=BudgetPeriod.MONTHLY,
                                     help_text="Project budgets: monthly or total. Your own budget: monthly.")


class NotificationSerializer(serializers.ModelSerializer):
    read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "kind", "message", "created_at", "read_at", "read"]
        read_only_fields = fields

    def get_read(self, obj: Notification) -> bool:
        return obj.read_at is not None


class NoBudget(ServiceError):
    code = "no_budget"
    http_status = status.HTTP_404_NOT_FOUND


def _show(budget: Any, whose: str) -> Response:
    if budget is None:
        raise NoBudget(f"{whose} has no budget.")
    return Response(budget_status(budget).as_dict())


def _set(request: Request, owner: dict[str, Any]) -> Response:
    data = BudgetWriteSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    budget = budget_set(**owner, limit_credits=data.validated_data["limit"], period=data.validated_data["period"])
    return Response(budget_status(budget).as_dict())


@extend_schema(tags=["budgets"])
class ProjectBudgetView(APIView):
    """A project's budget (total or monthly): new jobs that would pass it are refused with 402
    `budget_exceeded`."""

    @extend_schema(responses=BudgetSerializer, summary="The project's budget and this period's usage")
    def get(self, request: Request, project_id: Any) -> Response:
        project = project_get_for_user(request.user, project_id)
        return _show(budget_get(project=project), "This project")

    @extend_schema(request=BudgetWriteSerializer, responses=BudgetSerializer, summary="Set the project's budget")
    def put(self, request: Request, project_id: Any) -> Response:
        return _set(request, {"project": project_get_for_user(request.user, project_id, write=True)})

    @extend_schema(responses={204: None}, summary="Remove the project's budget")
    def delete(self, request: Request, project_id: Any) -> Response:
        budget_clear(project=project_get_for_user(request.user, project_id, write=True))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["budgets"])
class MeBudgetView(APIView):
    """Your own monthly cap across all your projects."""

    @extend_schema(responses=BudgetSerializer, summary="Your monthly budget and this month's usage")
    def get(self, request: Request) -> Response:
        return _show(budget_get(user=request.user), "Your account")

    @extend_schema(request=BudgetWriteSerializer, responses=BudgetSerializer, summary="Set your monthly budget")
    def put(self, request: Request) -> Response:
        return _set(request, {"user": request.user})

    @extend_schema(responses={204: None}, summary="Remove your monthly budget")
    def delete(self, request: Request) -> Response:
        budget_clear(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["notifications"])
class NotificationListView(APIView):
    pagination_class = CursorPagination  # the schema documents the page object from it

    @extend_schema(parameters=[OpenApiParameter("unread", OpenApiTypes.BOOL)],
                   responses=NotificationSerializer(many=True), summary="Your notifications, newest first")
    def get(self, request: Request) -> Response:
        qs = notification_list_for_user(request.user)
        if request.query_params.get("unread") in ("true", "1"):
            qs = qs.filter(read_at__isnull=True)
        paginator = CursorPagination()
        paginator.ordering = ("-created_at", "-id")
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(NotificationSerializer(page, many=True).data)


@extend_schema(tags=["notifications"])
class NotificationReadView(APIView):
    @extend_schema(request=None, responses=NotificationSerializer, summary="Mark a notification read")
    def post(self, request: Request, notification_id: int) -> Response:
        notification = notification_mark_read(user=request.user, notification_id=notification_id)
        return Response(NotificationSerializer(notification).data)
