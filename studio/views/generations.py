from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from billing.services import credits_summary
from core.errors import ServiceError
from generations.models import Generation
from generations.selectors import generation_get_for_user
from generations.services import generation_cancel
from projects.selectors import project_get_for_user
from studio.views.display import KIND_ICONS, input_rows, usd
from studio.views.projects import job_list_response

TEMPLATE = "studio/generation.html"
LOG_LINES = 200


def _context(generation: Generation) -> dict[str, object]:
    return {
        "generation": generation,
        "project": generation.project,
        "inputs": input_rows(generation.model.input_schema, generation.inputs),
        "logs": generation.logs[-LOG_LINES:],
        "outputs": list(generation.outputs.all()),
        "kind_icons": KIND_ICONS,
        "cost_estimated": usd(generation.cost_usd_estimated),
        "provider_cost": usd(generation.provider_cost_usd) if generation.provider_cost_usd is not None else "",
    }


def _live_with_credits(request: HttpRequest, generation: Generation, note: str = "") -> str:
    return (render_to_string(f"{TEMPLATE}#live", {**_context(generation), "note": note}, request)
            + render_to_string("studio/_credits.html", {"credits": credits_summary(user=request.user), "oob": True},
                               request))


@login_required
@require_GET
def generation_page(request: HttpRequest, generation_id: uuid.UUID) -> HttpResponse:
    generation = generation_get_for_user(request.user, generation_id)
    if request.htmx and request.GET.get("partial") == "live":
        if generation.is_active:
            return render(request, f"{TEMPLATE}#live", _context(generation))
        # 286: htmx stops polling; this last response is still swapped in, with the settled credits.
        return HttpResponse(_live_with_credits(request, generation), status=286)
    return render(request, TEMPLATE, _context(generation))


@login_required
@require_POST
def generation_cancel_view(request: HttpRequest, generation_id: uuid.UUID) -> HttpResponse:
    generation = generation_get_for_user(request.user, generation_id)
    try:
        generation = generation_cancel(user=request.user, generation_id=generation.pk)
        note, ok = ("Canceled; the held credits were released." if generation.status == "canceled"
                    else "Cancel requested; the job stops at the provider shortly."), True
    except ServiceError as exc:
        note, ok = exc.message, False
    if request.htmx:
        if request.POST.get("from") == "jobs":
            project = project_get_for_user(request.user, generation.project_id)
            response = job_list_response(request, project, watched={str(generation.pk)})
            # The cancel button's own response must be swapped even though nothing is active any more.
            response.status_code = 200
            return response
        fresh = generation_get_for_user(request.user, generation.pk)
        return HttpResponse(_live_with_credits(request, fresh, note=note))
    (messages.success if ok else messages.error)(request, note)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = ""
    return redirect(target or "studio:generation", **({} if target else {"generation_id": generation.pk}))
