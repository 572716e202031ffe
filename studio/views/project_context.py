"""What the project page shows, shared by its views (studio.views.projects, .generate, .uploads): the
job list, the asset grid, the generate panel with its estimate, and the whole page. Each builder
returns a template context; the page's fragments are partials of one template."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from assets.library.selectors import asset_get_for_user, asset_list_for_user
from billing.services import credits_summary
from billing.usage.services import project_cost_total
from core.errors import InvalidRequest
from generations.credentials import availability_for
from generations.health import typical_seconds
from generations.models import Generation
from generations.pricing import credits_display
from generations.selectors import generation_get_for_user, generation_recent_for_project, model_list
from generations.services import generation_estimate
from projects.models import Project
from studio.forms import ProjectEditForm, UploadForm
from studio.schema_form import form_fields, initial_values
from studio.views.budgets import budget_card_context
from studio.views.display import (
    annotate_availability,
    default_model,
    field_error_lines,
    kind_icon,
    model_groups,
    price_label,
)

TEMPLATE = "studio/project.html"
JOB_LIMIT = 20  # the job list shows the most recent jobs; the rest are on each asset's recipe
ASSET_LIMIT = 60  # newest assets in the grid
PICKER_LIMIT = 200  # newest assets offered to asset inputs


def _jobs(user: Any, project: Project) -> list[Generation]:
    return generation_recent_for_project(user, project, limit=JOB_LIMIT)


def jobs_context(user: Any, project: Project, jobs: list[Generation] | None = None) -> dict[str, Any]:
    jobs = _jobs(user, project) if jobs is None else jobs
    active_ids = [str(job.pk) for job in jobs if job.is_active]
    return {"project": project, "jobs": jobs, "active_ids": active_ids, "active_param": ",".join(active_ids)}


def project_assets(user: Any, project: Project) -> list[Any]:
    return list(asset_list_for_user(user).filter(project=project)[:PICKER_LIMIT])


def assets_context(project: Project, assets: list[Any], **extra: Any) -> dict[str, Any]:
    shown = assets[:ASSET_LIMIT]
    for asset in shown:
        asset.icon = kind_icon(asset.kind)
    return {"project": project, "assets": shown, "assets_truncated": len(assets) > ASSET_LIMIT, **extra}


def estimate_context(user: Any, model: Any, inputs: dict[str, Any], *, quiet: bool,
                     summary: Any = None) -> dict[str, Any]:
    """The estimate line. `quiet` leaves validation errors out: on a fresh form, "prompt is required"
    before anyone typed is noise, so the price per unit is shown instead."""
    ctx: dict[str, Any] = {"estimate": None, "estimate_errors": [], "price_label": price_label(model),
                           "estimate_model": model}
    try:
        _, _, estimate = generation_estimate(user=user, model_id=model.id, inputs=inputs, draw_seed=False)
    except InvalidRequest as exc:
        if not quiet:
            ctx["estimate_errors"] = field_error_lines(exc.fields, model.input_schema) or [exc.message]
        return ctx
    summary = summary or credits_summary(user=user)
    ctx.update(estimate=estimate, estimate_label=credits_display(estimate.credits), available=summary.available,
               short=estimate.credits > summary.available)
    return ctx


def panel_context(request: HttpRequest, project: Project, *, models: list[Any], assets: list[Any],
                  model_id: str | None = None, values: dict[str, Any] | None = None,
                  prefill_inputs: dict[str, Any] | None = None, prefill_asset: Any = None,
                  errors: dict[str, list[str]] | None = None, message: str = "", level: str = "error",
                  summary: Any = None, values_max_credits: str = "") -> dict[str, Any]:
    annotate_availability(models, availability_for(request.user, {m.provider for m in models}),
                          typical_seconds([m.id for m in models]))
    model = next((m for m in models if m.id == model_id), None) or default_model(models)
    ctx: dict[str, Any] = {"project": project, "model_groups": model_groups(models), "model": model,
                           "fields": [], "panel_message": message, "panel_level": level,
                           "errors": errors or {}, "values_max_credits": values_max_credits}
    if model is None:
        return ctx
    if values is None:
        values = initial_values(model.input_schema, inputs=prefill_inputs, asset=prefill_asset)
    ctx["fields"] = form_fields(model.input_schema, values=values, errors=errors, assets=assets)
    ctx.update(estimate_context(request.user, model, values, quiet=True, summary=summary))
    return ctx


def prefill(request: HttpRequest) -> dict[str, Any]:
    """`?model=…&from=<generation>` ("use again") and `?asset=<asset>` (quick actions), read through
    the access funnels; anything the user may not see is ignored rather than an error on this page."""
    model_id = request.GET.get("model") or None
    inputs = None
    if request.GET.get("from"):
        try:
            source = generation_get_for_user(request.user, request.GET["from"])
        except Http404:
            source = None
        if source is not None:
            inputs = dict(source.inputs)
            model_id = model_id or source.model_id
    asset = None
    if request.GET.get("asset"):
        try:
            asset = asset_get_for_user(request.user, request.GET["asset"])
        except Http404:
            asset = None
    return {"model_id": model_id, "prefill_inputs": inputs, "prefill_asset": asset}


def render_project_page(request: HttpRequest, project: Project, *, edit_form: ProjectEditForm | None = None,
                        status: int = 200, **panel: Any) -> HttpResponse:
    """The whole project page: header, generate panel (prefilled or with a failed post's errors), job
    list, asset grid, budget card and the edit form (open when `edit_form` failed)."""
    user = request.user
    summary = credits_summary(user=user)
    models = list(model_list())
    assets = project_assets(user, project)
    jobs_ctx = jobs_context(user, project)
    ctx = {
        **panel_context(request, project, models=models, assets=assets, summary=summary, **panel),
        **jobs_ctx,
        **assets_context(project, assets),
        **budget_card_context(user, project=project),
        "cost": project_cost_total(project),
        "credits": summary,  # the header reads this instead of querying again
        "edit_form": edit_form or ProjectEditForm(initial={"name": project.name, "description": project.description,
                                                           "archived": project.archived}),
        "edit_open": edit_form is not None,
        "upload_form": UploadForm(),
    }
    return render(request, TEMPLATE, ctx, status=status)
