from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from assets.selectors import asset_get_for_user
from assets.services import asset_download_url
from generations.selectors import model_list
from studio.schema_form import accepts_asset
from studio.views.display import KIND_ICONS, input_rows, operation_label, usd


@login_required
@require_GET
def asset_page(request: HttpRequest, asset_id: uuid.UUID) -> HttpResponse:
    asset = asset_get_for_user(request.user, asset_id)
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
               for m in model_list() if accepts_asset(m.input_schema, asset)]
    return render(request, "studio/asset.html", {
        "asset": asset,
        "project": asset.project,
        "download_url": asset_download_url(asset=asset, request=request),
        "recipe": recipe,
        "actions": actions,
        "kind_icon": KIND_ICONS.get(asset.kind, "📦"),
    })
