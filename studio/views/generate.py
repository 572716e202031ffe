"""The project page's generate panel: its live estimate, and submitting a job (the panel comes back
with errors in place or ready for another run, the job list rides along)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing.services import InsufficientCredits, credits_summary
from core.errors import InvalidRequest, ServiceError
from generations.pricing import credits_display
from generations.selectors import model_get, model_list
from generations.services import generation_create
from projects.selectors import project_get_for_user
from studio.schema_form import inputs_from_post
from studio.views.display import field_error_lines, price_label
from studio.views.project_context import (
    TEMPLATE,
    estimate_context,
    jobs_context,
    panel_context,
    project_assets,
    render_project_page,
)


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
        ctx = estimate_context(request.user, model, inputs, quiet=False)
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
        return render_project_page(request, project, status=status, **panel)
    # htmx swaps only 2xx responses by default: errors come back as 200 and are shown in the panel.
    summary = credits_summary(user=user)
    assets = project_assets(user, project)
    html = render_to_string(f"{TEMPLATE}#generate-panel",
                            panel_context(request, project, models=models, assets=assets, summary=summary, **panel),
                            request)
    if status == 200:
        html += render_to_string(f"{TEMPLATE}#job-list", {**jobs_context(user, project), "oob": True}, request)
        html += render_to_string("studio/_credits.html", {"credits": summary, "oob": True}, request)
    return HttpResponse(html)
