"""Export from the web app: a project's ZIP (a plain GET link on the project page) and a selection's
(a form POST, e.g. the gallery's bulk "Download"). Both stream the same archive as the API
(assets/sharing/export.py); a browser saves it as the attachment it is, no script needed."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from assets.sharing.export import export_project_ids, export_response, export_selection
from core.errors import InvalidRequest
from projects.selectors import project_get_for_user

TRUE = ("1", "on", "true", "yes")


@login_required
@require_GET
def project_export(request: HttpRequest, project_id: uuid.UUID) -> HttpResponseBase:
    project = project_get_for_user(request.user, project_id)
    return export_response(user=request.user, asset_ids=export_project_ids(user=request.user, project=project),
                           embed=request.GET.get("embed", "").lower() in TRUE, project=project)


@login_required
@require_POST
def assets_export(request: HttpRequest) -> HttpResponseBase:
    """`assets` (repeated) are the ids; `embed` embeds recipes; `next` is where to come back to with
    the reason when the selection is refused (an asset in the trash, none chosen)."""
    try:
        ids = export_selection(user=request.user, asset_ids=request.POST.getlist("assets"))
    except InvalidRequest as exc:
        messages.error(request, exc.message)
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
            back = "studio:dashboard"
        return redirect(back)
    return export_response(user=request.user, asset_ids=ids, embed=request.POST.get("embed", "").lower() in TRUE)
