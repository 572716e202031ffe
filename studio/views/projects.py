"""The project page and its own fragments (the polled job list, the asset grid, the generate panel
when the model changes), and the project's edit and delete forms. `project_page` renders the whole
page, or, for htmx, one of its fragments (`?partial=jobs|assets|generate`) from the same template's
partials. The generate panel's posts are studio.views.generate's; uploads are studio.views.uploads'."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from billing.services import credits_summary
from core.errors import ServiceError
from generations.selectors import model_list
from orchestration.projects import project_delete
from projects.models import Project
from projects.selectors import project_get_for_user
from projects.services import project_update
from studio.forms import ProjectEditForm, add_service_errors
from studio.schema_form import inputs_from_post
from studio.views.display import default_model
from studio.views.project_context import (
    TEMPLATE,
    assets_context,
    jobs_context,
    panel_context,
    prefill,
    project_assets,
    render_project_page,
)


def job_list_response(request: HttpRequest, project: Project, *, watched: set[str]) -> HttpResponse:
    """The polled job list. 286 tells htmx to stop polling once nothing is queued or running. When a
    job the page was watching has finished, the asset grid and the header's credits ride along as
    out-of-band swaps, so new outputs and the final charge appear without a reload."""
    user = request.user
    ctx = jobs_context(user, project)
    html = render_to_string(f"{TEMPLATE}#job-list", ctx, request)
    if watched - set(ctx["active_ids"]):
        summary = credits_summary(user=user)
        html += render_to_string(f"{TEMPLATE}#asset-grid",
                                 {**assets_context(project, project_assets(user, project)), "oob": True}, request)
        html += render_to_string("studio/_credits.html", {"credits": summary, "oob": True}, request)
    return HttpResponse(html, status=200 if ctx["active_ids"] else 286)


# --- views -----------------------------------------------------------------------------------------------

@login_required
@require_GET
def project_page(request: HttpRequest, project_id: uuid.UUID) -> HttpResponse:
    project = project_get_for_user(request.user, project_id)
    partial = request.GET.get("partial", "") if request.htmx else ""
    if partial == "jobs":
        return job_list_response(request, project,
                                 watched={s for s in request.GET.get("active", "").split(",") if s})
    if partial == "assets":
        return render(request, f"{TEMPLATE}#asset-grid",
                      assets_context(project, project_assets(request.user, project)))
    if partial == "generate":
        # The model picker swapped models: carry over what was typed where the new model has the same input.
        models = list(model_list())
        model = next((m for m in models if m.id == request.GET.get("model")), None) or default_model(models)
        values = inputs_from_post(model.input_schema, request.GET)[0] if model else {}
        return render(request, f"{TEMPLATE}#generate-panel",
                      panel_context(request, project, models=models, assets=project_assets(request.user, project),
                                    model_id=model.id if model else None, values=values))
    return render_project_page(request, project, **prefill(request))


@login_required
@require_POST
def project_edit(request: HttpRequest, project_id: uuid.UUID) -> HttpResponse:
    project = project_get_for_user(request.user, project_id, write=True)
    form = ProjectEditForm(request.POST)
    if form.is_valid():
        try:
            project_update(project=project, name=form.cleaned_data["name"],
                           description=form.cleaned_data["description"], archived=form.cleaned_data["archived"])
        except ServiceError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Project saved.")
            return redirect("studio:project", project_id=project.pk)
    project = project_get_for_user(request.user, project_id)  # unsaved edits must not show as the title
    return render_project_page(request, project, edit_form=form, status=400)


@login_required
@require_POST
def project_delete_view(request: HttpRequest, project_id: uuid.UUID) -> HttpResponse:
    project = project_get_for_user(request.user, project_id, write=True)
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm deleting the project.")
        return redirect("studio:project", project_id=project.pk)
    name = project.name
    try:
        project_delete(project=project)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("studio:project", project_id=project.pk)
    messages.success(request, f"Deleted {name} and its assets.")
    return redirect("studio:dashboard")
