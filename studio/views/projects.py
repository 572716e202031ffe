"""The project page and everything on it: the generate panel with its live estimate, the job list that
polls while jobs run, and the asset grid. `project_page` renders the whole page, or, for htmx, one of
its fragments (`?partial=jobs|assets|generate`) from the same template's partials."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from assets.library.selectors import asset_get_for_user, asset_list_for_user
from assets.services import asset_create
from assets.uploads.inspection import RefusedFile
from billing.limits import RateLimited, rate_limit_check
from billing.services import InsufficientCredits, credits_summary
from billing.usage.services import project_cost_total
from core.errors import InvalidRequest, ServiceError
from generations.credentials import availability_for
from generations.health import typical_seconds
from generations.models import Generation
from generations.pricing import credits_display
from generations.selectors import generation_get_for_user, generation_recent_for_project, model_get, model_list
from generations.services import generation_create, generation_estimate
from projects.models import Project
from projects.selectors import project_get_for_user
from projects.services import project_delete, project_update
from studio.forms import ProjectEditForm, UploadForm, add_service_errors
from studio.schema_form import form_fields, initial_values, inputs_from_post
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


# --- context builders ----------------------------------------------------------------------------------

def _jobs(user: Any, project: Project) -> list[Generation]:
    return generation_recent_for_project(user, project, limit=JOB_LIMIT)


def _jobs_context(user: Any, project: Project, jobs: list[Generation] | None = None) -> dict[str, Any]:
    jobs = _jobs(user, project) if jobs is None else jobs
    active_ids = [str(job.pk) for job in jobs if job.is_active]
    return {"project": project, "jobs": jobs, "active_ids": active_ids, "active_param": ",".join(active_ids)}


def _project_assets(user: Any, project: Project) -> list[Any]:
    return list(asset_list_for_user(user).filter(project=project)[:PICKER_LIMIT])


def _assets_context(project: Project, assets: list[Any], **extra: Any) -> dict[str, Any]:
    shown = assets[:ASSET_LIMIT]
    for asset in shown:
        asset.icon = kind_icon(asset.kind)
    return {"project": project, "assets": shown, "assets_truncated": len(assets) > ASSET_LIMIT, **extra}


def _estimate_context(user: Any, model: Any, inputs: dict[str, Any], *, quiet: bool,
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


def _panel_context(request: HttpRequest, project: Project, *, models: list[Any], assets: list[Any],
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
    ctx.update(_estimate_context(request.user, model, values, quiet=True, summary=summary))
    return ctx


def _prefill(request: HttpRequest) -> dict[str, Any]:
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


def _render_page(request: HttpRequest, project: Project, *, edit_form: ProjectEditForm | None = None,
                 status: int = 200, **panel: Any) -> HttpResponse:
    user = request.user
    summary = credits_summary(user=user)
    models = list(model_list())
    assets = _project_assets(user, project)
    jobs_ctx = _jobs_context(user, project)
    ctx = {
        **_panel_context(request, project, models=models, assets=assets, summary=summary, **panel),
        **jobs_ctx,
        **_assets_context(project, assets),
        **budget_card_context(user, project=project),
        "cost": project_cost_total(project),
        "credits": summary,  # the header reads this instead of querying again
        "edit_form": edit_form or ProjectEditForm(initial={"name": project.name, "description": project.description,
                                                           "archived": project.archived}),
        "edit_open": edit_form is not None,
        "upload_form": UploadForm(),
    }
    return render(request, TEMPLATE, ctx, status=status)


def job_list_response(request: HttpRequest, project: Project, *, watched: set[str]) -> HttpResponse:
    """The polled job list. 286 tells htmx to stop polling once nothing is queued or running. When a
    job the page was watching has finished, the asset grid and the header's credits ride along as
    out-of-band swaps, so new outputs and the final charge appear without a reload."""
    user = request.user
    ctx = _jobs_context(user, project)
    html = render_to_string(f"{TEMPLATE}#job-list", ctx, request)
    if watched - set(ctx["active_ids"]):
        summary = credits_summary(user=user)
        html += render_to_string(f"{TEMPLATE}#asset-grid",
                                 {**_assets_context(project, _project_assets(user, project)), "oob": True}, request)
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
                      _assets_context(project, _project_assets(request.user, project)))
    if partial == "generate":
        # The model picker swapped models: carry over what was typed where the new model has the same input.
        models = list(model_list())
        model = next((m for m in models if m.id == request.GET.get("model")), None) or default_model(models)
        values = inputs_from_post(model.input_schema, request.GET)[0] if model else {}
        return render(request, f"{TEMPLATE}#generate-panel",
                      _panel_context(request, project, models=models, assets=_project_assets(request.user, project),
                                     model_id=model.id if model else None, values=values))
    return _render_page(request, project, **_prefill(request))


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
    return _render_page(request, project, edit_form=form, status=400)


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


@login_required
@require_POST
def estimate(request: HttpRequest, project_id: uuid.UUID) -> HttpResponse:
    project_get_for_user(request.user, project_id)
    try:
        model = model_get(request.POST.get("model", ""))
    except Http404:
        return render(request, f"{TEMPLATE}#estimate", {"estimate_errors": ["Choose a model."]})
    inputs, parse_errors = inputs_from_post(model.input_schema, request.POST)
    if parse_errors:
        ctx = {"estimate_errors": field_error_lines(parse_errors, model.input_schema),
               "price_label": price_label(model), "estimate_model": model}
    else:
        ctx = _estimate_context(request.user, model, inputs, quiet=False)
    return render(request, f"{TEMPLATE}#estimate", ctx)


@login_required
@require_POST
def generate(request: HttpRequest, project_id: uuid.UUID) -> HttpResponse:
    """Submit the generate form. htmx gets the panel back (errors in place, or the same inputs ready
    for another run) plus the job list out of band; a plain POST redirects, or re-renders on error."""
    user = request.user
    project = project_get_for_user(user, project_id, write=True)
    models = list(model_list())
    model = next((m for m in models if m.id == request.POST.get("model")), None)
    panel: dict[str, Any] = {"model_id": request.POST.get("model")}
    status = 400
    if model is None:
        panel.update(message="Choose a model from the list.")
    else:
        inputs, errors = inputs_from_post(model.input_schema, request.POST)
        panel["values"] = {**inputs, **{k.split(".", 1)[1]: request.POST.get(k) for k in errors}}
        if errors:
            panel.update(errors=errors, message="Some inputs need fixing.")
        else:
            raw_cap = request.POST.get("max_credits", "").strip()
            panel["values_max_credits"] = raw_cap
            try:
                max_credits = int(raw_cap) if raw_cap else None
            except ValueError:
                max_credits = raw_cap  # generation_create refuses it with a field error
            try:
                generation = generation_create(user=user, project_id=project.pk, model_id=model.id, inputs=inputs,
                                               rate_limit=True, max_credits=max_credits)
            except InvalidRequest as exc:
                panel.update(errors=exc.fields, message=exc.message if not exc.fields else "Some inputs need fixing.")
            except InsufficientCredits as exc:
                status = 402
                panel.update(message=f"Not enough credits: this job needs {credits_display(exc.required)} and you "
                                     f"have {exc.available} available ({exc.balance} balance, {exc.held} on hold "
                                     f"for running jobs). Lower the size or count, or wait for running jobs.")
            except ServiceError as exc:  # e.g. the project is archived
                panel.update(message=exc.message)
            else:
                status = 200
                note = (f"Queued {model.name} (≈ {credits_display(generation.credits_estimated)}, "
                        f"{credits_display(generation.credits_held)} on hold). "
                        f"Follow it in the job list.")
                if not request.htmx:
                    messages.success(request, note)
                    return redirect(reverse("studio:project", kwargs={"project_id": project.pk}) + "#job-list")
                panel.update(message=note, level="success")
    if not request.htmx:
        return _render_page(request, project, status=status, **panel)
    # htmx swaps only 2xx responses by default: errors come back as 200 and are shown in the panel.
    summary = credits_summary(user=user)
    assets = _project_assets(user, project)
    html = render_to_string(f"{TEMPLATE}#generate-panel",
                            _panel_context(request, project, models=models, assets=assets, summary=summary, **panel),
                            request)
    if status == 200:
        html += render_to_string(f"{TEMPLATE}#job-list", {**_jobs_context(user, project), "oob": True}, request)
        html += render_to_string("studio/_credits.html", {"credits": summary, "oob": True}, request)
    return HttpResponse(html)


@login_required
@require_POST
def asset_upload(request: HttpRequest, project_id: uuid.UUID) -> HttpResponse:
    """Upload one or more files (the `file` field, repeated). Three ways in, one service:
    - upload.js sends each file on its own XMLHttpRequest (per-file progress) with Accept:
      application/json, and gets 201 `{"id", "name", "url"}` or the API's error body
      `{"error": {"code", "message"}}` with 400 (refused, quota) or 429 (rate limit), shown in place;
    - htmx gets the asset grid back with the per-file errors at its top;
    - a plain form post (no JavaScript) is redirected to the project page with a message per file.
    Every file counts against the plan's daily upload limit, refused ones included."""
    project = project_get_for_user(request.user, project_id, write=True)
    uploads = request.FILES.getlist("file")
    keep_location = request.POST.get("keep_location") in ("true", "on", "1")
    wants_json = "application/json" in request.headers.get("Accept", "")
    errors: list[str] = []
    created: list[Any] = []
    failure: ServiceError | RefusedFile | None = None
    if not uploads:
        errors.append("Choose a file to upload.")
        failure = InvalidRequest("Choose a file to upload.", code="invalid", fields={"file": ["No file was sent."]})
    for upload in uploads:
        try:
            rate_limit_check(user=request.user, group="uploads")
        except RateLimited as exc:
            errors.append(exc.message)
            failure = exc
            break
        try:
            created.append(asset_create(project=project, fh=upload, name=upload.name or "upload", size=upload.size,
                                        keep_location=keep_location))
        except (RefusedFile, ServiceError) as exc:
            errors.append(f"{upload.name}: {exc.message}")
            failure = exc
    if wants_json:
        return _upload_json(created, failure)
    if request.htmx:
        ctx = _assets_context(project, _project_assets(request.user, project), upload_errors=errors,
                              uploaded=len(created))
        return render(request, f"{TEMPLATE}#asset-grid", ctx)
    for error in errors:
        messages.error(request, error)
    if created:
        messages.success(request, f"Uploaded {len(created)} file{'s' if len(created) != 1 else ''}.")
    return redirect(reverse("studio:project", kwargs={"project_id": project.pk}) + "#assets")


def _upload_json(created: list[Any], failure: ServiceError | RefusedFile | None) -> JsonResponse:
    """One file's outcome for upload.js, in the API's shapes (it sends one file per request)."""
    if failure is not None and not created:
        status = getattr(failure, "http_status", 400)
        body: dict[str, Any] = {"code": failure.code, "message": failure.message}
        extra = getattr(failure, "extra", None)
        if extra:
            body.update(extra)
        return JsonResponse({"error": body}, status=status)
    assets = [{"id": str(a.pk), "name": a.name, "kind": a.kind, "size": a.size,
               "url": reverse("studio:asset", kwargs={"asset_id": a.pk})} for a in created]
    return JsonResponse({**assets[0], "assets": assets} if len(assets) == 1 else {"assets": assets}, status=201)
