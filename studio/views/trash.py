"""The trash: what the user deleted in the last 30 days, with restore, delete forever and empty trash.
Assets left in the trash are deleted for good by the daily purge (assets.tasks.assets_purge_trash_task)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from assets.library.organise import TRASH_DAYS, asset_delete_forever, asset_restore, asset_trash, assets_trash_empty
from assets.library.selectors import asset_get_for_user, asset_list_for_user
from studio.views.collections import decorate

LIMIT = 200


def _trashed(user: Any) -> Any:
    return asset_list_for_user(user, include_trashed=True).filter(deleted_at__isnull=False)


@login_required
@require_GET
def trash_page(request: HttpRequest) -> HttpResponse:
    assets = list(_trashed(request.user).select_related("project").order_by("-deleted_at", "-id")[:LIMIT + 1])
    for asset in decorate(assets):
        asset.purge_at = asset.deleted_at + timedelta(days=TRASH_DAYS)
    return render(request, "studio/trash.html", {
        "assets": assets[:LIMIT], "truncated": len(assets) > LIMIT, "trash_days": TRASH_DAYS,
    })


@login_required
@require_POST
def asset_trash_view(request: HttpRequest, asset_id: uuid.UUID) -> HttpResponse:
    asset = asset_get_for_user(request.user, asset_id)
    asset_trash(user=request.user, asset_id=asset.pk)
    messages.success(request, f"Moved {asset.name} to the trash. It is deleted for good after {TRASH_DAYS} days "
                              f"unless you restore it.")
    return redirect("studio:project", project_id=asset.project_id)


@login_required
@require_POST
def asset_restore_view(request: HttpRequest, asset_id: uuid.UUID) -> HttpResponse:
    asset = asset_get_for_user(request.user, asset_id)
    asset_restore(user=request.user, asset_id=asset.pk)
    messages.success(request, f"Restored {asset.name}.")
    if request.POST.get("next") == "trash":
        return redirect("studio:trash")
    return redirect("studio:asset", asset_id=asset.pk)


@login_required
@require_POST
def trash_delete_view(request: HttpRequest, asset_id: uuid.UUID) -> HttpResponse:
    """Delete one trashed asset for good, now (rows at once, files when the transaction commits)."""
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm deleting it forever.")
        return redirect(reverse("studio:trash"))
    asset = asset_delete_forever(user=request.user, asset_id=asset_id)
    messages.success(request, f"Deleted {asset.name} forever.")
    return redirect("studio:trash")


@login_required
@require_POST
def trash_empty_view(request: HttpRequest) -> HttpResponse:
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm emptying the trash.")
        return redirect("studio:trash")
    count = assets_trash_empty(user=request.user)
    messages.success(request, f"Deleted {count} asset{'s' if count != 1 else ''} forever.")
    return redirect("studio:trash")
