"""Filter sets for lists that live inside projects: `?project=` goes through the access funnel, so
naming another user's project is a 404, as on every other route."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from projects.selectors import project_get_for_user


class ProjectScopedFilterSet(django_filters.FilterSet):
    project = django_filters.UUIDFilter(method="filter_project")

    def filter_project(self, queryset: QuerySet[Any], name: str, value: Any) -> QuerySet[Any]:
        return queryset.filter(project=project_get_for_user(self.request.user, value))


def filter_or_400(filterset_class: type[django_filters.FilterSet], request: Request, queryset: QuerySet[Any]) -> QuerySet[Any]:
    filterset = filterset_class(request.query_params, queryset=queryset, request=request)
    if not filterset.is_valid():
        raise ValidationError({field: list(errors) for field, errors in filterset.errors.items()})
    return filterset.qs
