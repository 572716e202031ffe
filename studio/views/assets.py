"""The asset page: the file, its details and recipe, and everything done with it: organise (name, tags,
rating, favourite, notes), its lineage with costs, its duplicates, its collections, share links, and
moving it to the trash or back. `asset_organise` serves the organise card to htmx, or redirects."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from assets.library.collections import collection_options_for_asset
from assets.library.duplicates import NEAR_THRESHOLD, Duplicates, asset_duplicates
from assets.library.organise import MAX_TAGS_PER_ASSET, TRASH_DAYS, asset_update
from assets.library.selectors import asset_get_for_user
from assets.links import asset_download_url
from assets.sharing.shares import share_status, shares_for_object
from core.errors import ServiceError
from generations.selectors import model_list
from orchestration.lineage import Cost, Lineage, LineageNode, asset_lineage
from studio.forms import add_service_errors
from studio.schema_form import accepts_asset
from studio.views.collections import decorate
from studio.views.display import comma_list, input_rows, kind_icon, operation_label, usd
from studio.views.shares import EXPIRY_CHOICES

TEMPLATE = "studio/asset.html"
RATING_CHOICES = [("", "No rating")] + [(str(n), "★" * n) for n in range(1, 6)]


class OrganiseForm(forms.Form):
    name = forms.CharField(max_length=255)
    tags = forms.CharField(required=False, max_length=4000,
                           help_text=f"Separated by commas; at most {MAX_TAGS_PER_ASSET}.")
    rating = forms.TypedChoiceField(required=False, choices=RATING_CHOICES, coerce=int, empty_value=None)
    favourite = forms.BooleanField(required=False)
    notes = forms.CharField(required=False, max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}))


def _organise_initial(asset: Any) -> dict[str, Any]:
    return {"name": asset.name, "tags": ", ".join(t.name for t in asset.tags.all()),
            "rating": str(asset.rating or ""), "favourite": asset.favourite, "notes": asset.notes}


def _organise_context(asset: Any, form: OrganiseForm | None = None, saved: bool = False) -> dict[str, Any]:
    return {"asset": asset, "organise_form": form or OrganiseForm(initial=_organise_initial(asset)),
            "saved": saved}


@login_required
@require_GET
def asset_page(request: HttpRequest, asset_id: uuid.UUID) -> HttpResponse:
    asset = asset_get_for_user(request.user, asset_id)
    return _render(request, asset)


def _render(request: HttpRequest, asset: Any, *, form: OrganiseForm | None = None, status: int = 200) -> HttpResponse:
    generation = asset.generation  # selected with its model by the funnel
    recipe = None
    if generation is not None:
        recipe = {
            "generation": generation,
            "inputs": input_rows(generation.model.input_schema, generation.inputs),
            "provider_cost": usd(generation.provider_cost_usd) if generation.provider_cost_usd is not None else "",
        }
    # Quick actions: every model with an input that takes this kind of asset ("Upscale", "Remove background").
    actions = [{"model": m, "label": f"{m.name} ({operation_label(m.operation).lower()})"}
               for m in model_list() if accepts_asset(m.input_schema, asset)] if asset.deleted_at is None else []
    options = collection_options_for_asset(request.user, asset)
    shares = shares_for_object(request.user, asset=asset)
    for share in shares:
        share.state = share_status(share)
    return render(request, TEMPLATE, {
        **_organise_context(asset, form),
        "project": asset.project,
        "download_url": asset_download_url(asset=asset, request=request),
        "recipe": recipe,
        "actions": actions,
        "kind_icon": kind_icon(asset.kind),
        "lineage": _lineage(request.user, asset),
        "duplicates": _duplicates(request.user, asset),
        "near_threshold": NEAR_THRESHOLD,
        "collections_in": [c for c in options if c["has_asset"]],
        "collections_addable": [c for c in options if not c["has_asset"]],
        "shares": shares,
        "expiry_choices": EXPIRY_CHOICES,
        "trash_days": TRASH_DAYS,
    }, status=status)


def _cost_label(cost: Cost) -> str:
    return f"{cost.credits} credit{'s' if cost.credits != 1 else ''} · {usd(cost.provider_cost_usd)}"


def _lineage(user: Any, asset: Any) -> Lineage:
    lineage = asset_lineage(user=user, asset_id=asset.pk)

    def label(nodes: list[LineageNode]) -> None:
        for node in nodes:
            generation = node.asset.generation
            node.step_label = operation_label(generation.model.operation) if generation else "Upload"
            node.cost_label = _cost_label(node.cost)
            node.via_label = ", ".join(name for name in node.via if name != "parent")  # which input it was
            decorate([node.asset])
            label(node.links)

    label([lineage.root, *lineage.parents, *lineage.children])
    lineage.to_make_label = _cost_label(lineage.to_make)
    lineage.chain_label = _cost_label(lineage.chain)
    return lineage


def _duplicates(user: Any, asset: Any) -> Duplicates:
    found = asset_duplicates(user=user, asset_id=asset.pk)
    decorate(found.exact)
    for other, distance in found.near:
        decorate([other])
        other.distance = distance
    return found


@login_required
@require_POST
def asset_organise(request: HttpRequest, asset_id: uuid.UUID) -> HttpResponse:
    asset = asset_get_for_user(request.user, asset_id)
    form = OrganiseForm(request.POST)
    saved = False
    if form.is_valid():
        data = form.cleaned_data
        try:
            asset = asset_update(user=request.user, asset_id=asset.pk, name=data["name"], notes=data["notes"],
                                 rating=data["rating"], favourite=data["favourite"], tags=comma_list(data["tags"]))
        except ServiceError as exc:
            add_service_errors(form, exc)
        else:
            saved = True
    if not request.htmx:
        if saved:
            messages.success(request, "Saved.")
            return redirect(reverse("studio:asset", kwargs={"asset_id": asset.pk}) + "#organise")
        return _render(request, asset_get_for_user(request.user, asset.pk), form=form, status=400)
    asset = asset_get_for_user(request.user, asset.pk)
    ctx = _organise_context(asset, None if saved else form, saved=saved)
    # htmx swaps only 2xx responses: errors come back as 200 and are shown in the form.
    return render(request, f"{TEMPLATE}#organise", ctx)
