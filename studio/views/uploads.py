"""Uploading files into a project from its page: one view for upload.js (JSON per file), htmx (the
asset grid) and a plain form post (a redirect with messages)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from assets.services import asset_create
from assets.uploads.inspection import RefusedFile
from billing.limits import RateLimited, rate_limit_check
from core.errors import InvalidRequest, ServiceError
from projects.selectors import project_get_for_user
from studio.views.project_context import TEMPLATE, assets_context, project_assets


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
        ctx = assets_context(project, project_assets(request.user, project), upload_errors=errors,
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
