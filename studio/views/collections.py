"""Collections on the web: the list (with a "new collection" form), one collection's page with its
items in order, and the writes behind them. Reordering works three ways, all through the same
services: drag and drop (static/studio/collections.js posts the whole order), the move up/down
buttons (plain forms, so they work with the keyboard and without JavaScript), and the API."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from assets.library.collections import (
    MAX_DESCRIPTION,
    MAX_NAME,
    collection_assets,
    collection_create,
    collection_delete,
    collection_get_for_user,
    collection_item_move,
    collection_items_add,
    collection_items_remove,
    collection_list_with_stats_for_user,
    collection_reorder,
    collection_update,
)
from assets.library.selectors import asset_get_for_user
from assets.links import asset_path, asset_preview_urls
from assets.sharing.shares import shares_for_object
from core.errors import ServiceError
from projects.selectors import project_list_for_user
from studio.forms import add_service_errors
from studio.views.display import cover_url, kind_icon
from studio.views.shares import EXPIRY_CHOICES

TEMPLATE = "studio/collection.html"


class CollectionForm(forms.Form):
    name = forms.CharField(max_length=MAX_NAME)
    description = forms.CharField(required=False, max_length=MAX_DESCRIPTION,
                                  widget=forms.Textarea(attrs={"rows": 2}))
    project = forms.UUIDField(required=False)


def thumb_url(asset: Any) -> str | None:
    """A small picture of the asset for tiles: its thumbnail once the preview worker made it, an image's
    own file until then, else None (the tile shows the kind's icon)."""
    small = asset_preview_urls(asset)["small"]
    if small:
        return small
    if asset.kind == "image":
        return asset_path("asset-download", asset.pk) + "?inline=1"
    return None


def decorate(assets: Any) -> Any:
    for asset in assets:
        asset.icon = kind_icon(asset.kind)
        asset.thumb = thumb_url(asset)
    return assets


def _projects(user: Any) -> list[Any]:
    return list(project_list_for_user(user).order_by("name")[:200])


@login_required
@require_http_methods(["GET", "POST"])
def collections_page(request: HttpRequest) -> HttpResponse:
    form = CollectionForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                collection = collection_create(user=request.user, name=form.cleaned_data["name"],
                                               description=form.cleaned_data["description"],
                                               project_id=form.cleaned_data["project"])
            except ServiceError as exc:
                add_service_errors(form, exc)
            else:
                return redirect("studio:collection", collection_id=collection.pk)
        status = 400
    return render(request, "studio/collections.html", {
        "form": form,
        "collections": [_with_cover(c) for c in collection_list_with_stats_for_user(request.user)[:500]],
        "projects": _projects(request.user),
    }, status=status)


def _with_cover(collection: Any) -> Any:
    collection.cover_url = cover_url(collection)
    return collection


def _items_context(collection: Any, **extra: Any) -> dict[str, Any]:
    items = decorate(collection_assets(collection))
    return {"collection": collection, "items": items, "last_index": len(items) - 1, **extra}


@login_required
@require_GET
def collection_page(request: HttpRequest, collection_id: uuid.UUID) -> HttpResponse:
    collection = collection_get_for_user(request.user, collection_id)
    if request.htmx and request.GET.get("partial") == "items":
        return render(request, f"{TEMPLATE}#item-list", _items_context(collection))
    return _render(request, collection)


def _render(request: HttpRequest, collection: Any, *, edit_form: CollectionForm | None = None,
            status: int = 200) -> HttpResponse:
    return render(request, TEMPLATE, {
        **_items_context(collection),
        "edit_form": edit_form or CollectionForm(initial={"name": collection.name,
                                                          "description": collection.description,
                                                          "project": collection.project_id}),
        "edit_open": edit_form is not None,
        "projects": _projects(request.user),
        "shares": shares_for_object(request.user, collection=collection),
        "expiry_choices": EXPIRY_CHOICES,
    }, status=status)


@login_required
@require_POST
def collection_edit(request: HttpRequest, collection_id: uuid.UUID) -> HttpResponse:
    collection = collection_get_for_user(request.user, collection_id)
    form = CollectionForm(request.POST)
    if form.is_valid():
        try:
            collection_update(user=request.user, collection_id=collection.pk, name=form.cleaned_data["name"],
                              description=form.cleaned_data["description"], project_id=form.cleaned_data["project"])
        except ServiceError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Collection saved.")
            return redirect("studio:collection", collection_id=collection.pk)
    return _render(request, collection, edit_form=form, status=400)


@login_required
@require_POST
def collection_delete_view(request: HttpRequest, collection_id: uuid.UUID) -> HttpResponse:
    collection = collection_get_for_user(request.user, collection_id)
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the box to confirm deleting the collection.")
        return redirect("studio:collection", collection_id=collection.pk)
    collection_delete(user=request.user, collection_id=collection.pk)
    messages.success(request, f"Deleted the collection {collection.name}. Its assets are where they were.")
    return redirect("studio:collections")


def _items_response(request: HttpRequest, collection_id: Any, *, status: int = 200, note: str = "",
                    level: str = "success") -> HttpResponse:
    """htmx and collections.js get the item list back; a plain form post goes back to the page."""
    collection = collection_get_for_user(request.user, collection_id)
    if request.htmx or request.headers.get("X-Requested-With") == "fetch":
        # htmx swaps only 2xx responses, so it gets errors as 200; collections.js reads the real status.
        return render(request, f"{TEMPLATE}#item-list", _items_context(collection, note=note, level=level),
                      status=200 if request.htmx else status)
    if note:
        (messages.success if level == "success" else messages.error)(request, note)
    return redirect(reverse("studio:collection", kwargs={"collection_id": collection.pk}) + "#items")


@login_required
@require_POST
def collection_move(request: HttpRequest, collection_id: uuid.UUID) -> HttpResponse:
    """Move one item to `position` (the up/down buttons post the neighbouring index)."""
    try:
        position = int(request.POST.get("position", ""))
    except ValueError:
        return _items_response(request, collection_id, status=400, note="Choose a position.", level="error")
    try:
        at = collection_item_move(user=request.user, collection_id=collection_id, asset_id=request.POST.get("asset"),
                                  position=position)
    except ServiceError as exc:
        return _items_response(request, collection_id, status=exc.http_status, note=exc.message, level="error")
    return _items_response(request, collection_id, note=f"Moved to position {at + 1}.")


@login_required
@require_POST
def collection_reorder_view(request: HttpRequest, collection_id: uuid.UUID) -> HttpResponse:
    """The whole order at once (drag and drop): `assets` repeated, first to last."""
    try:
        collection_reorder(user=request.user, collection_id=collection_id, asset_ids=request.POST.getlist("assets"))
    except ServiceError as exc:
        return _items_response(request, collection_id, status=exc.http_status, note=exc.message, level="error")
    return _items_response(request, collection_id, note="Order saved.")


@login_required
@require_POST
def collection_remove(request: HttpRequest, collection_id: uuid.UUID) -> HttpResponse:
    try:
        removed = collection_items_remove(user=request.user, collection_id=collection_id,
                                          asset_ids=request.POST.getlist("asset"))
    except ServiceError as exc:
        return _items_response(request, collection_id, status=exc.http_status, note=exc.message, level="error")
    return _items_response(request, collection_id, note="Removed from the collection." if removed else "")


@login_required
@require_POST
def collection_add(request: HttpRequest) -> HttpResponse:
    """From the asset page: add the asset to a collection, or to a new one named in `new_name`."""
    asset = asset_get_for_user(request.user, request.POST.get("asset", ""))
    back = reverse("studio:asset", kwargs={"asset_id": asset.pk}) + "#collections"
    new_name = (request.POST.get("new_name") or "").strip()
    try:
        if new_name:
            collection = collection_create(user=request.user, name=new_name, project_id=asset.project_id)
        else:
            collection = collection_get_for_user(request.user, request.POST.get("collection", ""))
        added = collection_items_add(user=request.user, collection_id=collection.pk, asset_ids=[asset.pk])
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, f"Added to {collection.name}." if added else f"Already in {collection.name}.")
    return redirect(back)
