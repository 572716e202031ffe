from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from core.errors import ServiceError
from orchestration.projects import project_list_with_stats_for_user
from projects.services import project_create
from studio.forms import ProjectForm, add_service_errors
from studio.views.display import cover_url


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
    projects = list(project_list_with_stats_for_user(request.user))
    for project in projects:
        project.cover_url = cover_url(project)
    return render(request, "studio/dashboard.html", {
        "form": form,
        "projects": [p for p in projects if not p.archived],
        "archived": [p for p in projects if p.archived],
    }, status=status)
