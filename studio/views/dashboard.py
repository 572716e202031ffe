from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from assets.selectors import asset_list_for_user
from config.errors import ServiceError
from generations.selectors import generation_list_for_user
from projects.selectors import project_list_for_user
from projects.services import project_create
from studio.forms import ProjectForm, add_service_errors


def _count(qs: QuerySet[Any]) -> Subquery:
    return Coalesce(Subquery(qs.filter(project=OuterRef("pk")).order_by().values("project")
                             .annotate(n=Count("pk")).values("n")[:1], output_field=IntegerField()), Value(0))


def _projects_for_cards(user: Any) -> QuerySet[Any]:
    """The user's projects with their counts and newest image, in one query: correlated subqueries
    rather than joins, so counting assets does not multiply rows by generations."""
    images = asset_list_for_user(user).filter(project=OuterRef("pk"), kind="image").order_by("-created_at", "-id")
    return project_list_for_user(user).annotate(
        asset_count=_count(asset_list_for_user(user)),
        generation_count=_count(generation_list_for_user(user)),
        cover_id=Subquery(images.values("pk")[:1]),
    )


@login_required
@require_http_methods(["GET", "POST"])
def dashboard(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                project = project_create(owner=request.user, name=form.cleaned_data["name"],
                                         description=form.cleaned_data["description"])
            except ServiceError as exc:
                add_service_errors(form, exc)
            else:
                return redirect("studio:project", project_id=project.pk)
        status = 400
    projects = list(_projects_for_cards(request.user))
    return render(request, "studio/dashboard.html", {
        "form": form,
        "projects": [p for p in projects if not p.archived],
        "archived": [p for p in projects if p.archived],
    }, status=status)
