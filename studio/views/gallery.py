"""The gallery: every asset of the user (or of one project) in a grid, masonry or list, with the filter
bar, keyset pages ("Load more", or infinite scroll with htmx), a lightbox (static/studio/gallery.js)
and bulk actions on a selection.

One view serves the page and its fragments, chosen by htmx's target: `#gallery-results` (the filter bar
changed: the results from the first page), `#gallery-items` (the next page's tiles, appended, with the
"Load more" button swapped out of band). Without JavaScript the filter bar is a GET form, "Load more"
a link to the next page, and the bulk bar a POST form that redirects back.

The query is assets.library.selectors.asset_gallery_for_user, the same as the API's; nothing on the page
counts the user's assets.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from assets.library.gallery import ASPECTS, SORTS, blurhash_average
from assets.library.organise import assets_bulk
from assets.library.selectors import asset_gallery_for_user, tag_list_for_user
from assets.links import asset_path, asset_preview_urls
from assets.models import Asset, AssetKind, AssetSource
from core.errors import InvalidRequest, ServiceError
from generations.selectors import model_list
from projects.models import Project
from projects.selectors import project_get_for_user, project_list_for_user
from studio.views.display import comma_list, kind_icon

TEMPLATE = "studio/gallery.html"
VIEWS = ("grid", "masonry", "list")
VIEW_COOKIE = "gallery_view"
TAG_SUGGESTIONS = 500
# Query parameters that belong to one page rather than to the list: links and the form drop them
# (the layout is remembered in a cookie instead).
PAGE_PARAMS = ("cursor", "view")
FILTER_PARAMS = ("kind", "source", "model", "provider", "favourite", "rating_gte", "created_after",
                 "created_before", "aspect", "aspect_min", "aspect_max")
BULK_DONE = {
    "move": "Moved {n} asset{s} to {project}.",
    "tag": "Tagged {n} asset{s}.",
    "untag": "Removed the tags from {n} asset{s}.",
    "favourite": "Added {n} asset{s} to favourites.",
    "unfavourite": "Removed {n} asset{s} from favourites.",
    "rate": "Rated {n} asset{s}.",
    "trash": "Moved {n} asset{s} to the trash. Restore them from the trash within 30 days.",
    "restore": "Restored {n} asset{s}.",
}


def _view_mode(request: HttpRequest, params: QueryDict) -> tuple[str, bool]:
    """grid, masonry or list: from ?view= (remembered in a cookie), else the cookie, else grid."""
    asked = params.get("view")
    if asked in VIEWS:
        return asked, True
    remembered = request.COOKIES.get(VIEW_COOKIE)
    return (remembered if remembered in VIEWS else "grid"), False


def _query(params: QueryDict, **changes: Any) -> str:
    """`params` without the page's own parameters, with `changes` applied (None drops a key)."""
    query = QueryDict(mutable=True)
    for key, values in params.lists():
        kept = [v for v in values if v.strip()]  # the GET form sends empty fields too
        if kept and key not in PAGE_PARAMS:
            query.setlist(key, kept)
    for key, value in changes.items():
        query.pop(key, None)
        if value is not None:
            query.setlist(key, value if isinstance(value, list) else [value])
    return query.urlencode()


def _decorate(assets: list[Asset], project_names: dict[uuid.UUID, str]) -> None:
    for asset in assets:
        thumbnails = asset_preview_urls(asset)
        asset.thumb_small_url, asset.thumb_large_url = thumbnails["small"], thumbnails["large"]
        # Until the worker has made the previews, an image is shown from its original.
        asset.original_url = (f"{asset_path('asset-download', asset.pk)}?inline=1"
                              if asset.kind == AssetKind.IMAGE and asset.preview_status in ("pending", "ready")
                              else "")
        asset.placeholder = blurhash_average(asset.blurhash) or ""
        asset.icon = kind_icon(asset.kind)
        asset.project_name = project_names.get(asset.project_id, "")


def _filter_values(params: QueryDict) -> dict[str, Any]:
    values: dict[str, Any] = {key: params.get(key, "") for key in (*FILTER_PARAMS, "q", "sort", "project")}
    values["tags"] = [t for t in params.getlist("tag") if t.strip()]
    values["trashed"] = params.get("trashed", "").lower() in ("true", "1", "yes", "on")
    return values


def _render_gallery(request: HttpRequest, params: QueryDict, *, project: Project | None = None,
                    selected: list[str] | tuple[str, ...] = (), bulk_error: str = "", here: str = "") -> HttpResponse:
    user = request.user
    shown = params  # what links and the form carry: a project gallery's project is in its path
    if project is not None:
        params = params.copy()
        params["project"] = str(project.pk)
    view, view_asked = _view_mode(request, params)
    error, field_errors, page = "", {}, None
    try:
        page = asset_gallery_for_user(user, params)
    except ServiceError as exc:
        # A hand-edited URL or a stale cursor: say which field, keep the form as typed.
        error, field_errors = exc.message, exc.fields
    target = request.htmx.target if request.htmx else None
    projects = list(project_list_for_user(user).only("id", "name", "archived").order_by("name"))
    if page is not None:
        _decorate(page.assets, {p.pk: p.name for p in projects})
    values = _filter_values(shown)
    here = here or request.path
    context: dict[str, Any] = {
        "page": page, "assets": page.assets if page else [], "error": error, "field_errors": field_errors,
        "view": view, "values": values, "project": project, "selected": set(selected), "bulk_error": bulk_error,
        "here": here, "query": _query(shown),
        "filtered": any(values[k] for k in (*FILTER_PARAMS, "q", "tags")) or (bool(values["project"]) and not project),
        "next_url": f"{here}?{_query(shown, cursor=page.next_cursor)}" if page and page.next_cursor else "",
        "previous_url": (f"{here}?{_query(shown, cursor=page.previous_cursor)}"
                         if page and page.previous_cursor else ""),
        "tag_removals": [(tag, _query(shown, tag=[t for t in values["tags"] if t != tag])) for tag in values["tags"]],
        "view_links": [(mode, f"{here}?{_query(shown, view=mode)}") for mode in VIEWS],
        "trash_url": f"{here}?{_query(QueryDict(), trashed='true')}",
    }
    if target == "gallery-items":
        response = render(request, f"{TEMPLATE}#more", context)
    elif target == "gallery-results":
        response = render(request, f"{TEMPLATE}#results-swap", context)
    else:
        models = list(model_list().prefetch_related(None).order_by("provider", "name").values_list("id", "name", "provider"))
        context.update({
            "projects": projects,
            "models": models,
            "providers": sorted({provider for _, _, provider in models} | ({values["provider"]} - {""})),
            "kinds": AssetKind.choices, "sources": AssetSource.choices, "aspects": ASPECTS,
            "sorts": [(s.name, s.label) for s in SORTS.values()],
            "tag_suggestions": list(tag_list_for_user(user).values_list("name", flat=True)[:TAG_SUGGESTIONS]),
            "filters_open": any(values[k] for k in (*FILTER_PARAMS, "tags", "project")),
            "export_url": reverse("studio:export-selection"),
        })
        response = render(request, TEMPLATE, context)
    if view_asked:
        response.set_cookie(VIEW_COOKIE, view, max_age=365 * 24 * 3600, samesite="Lax")
    # One URL answers with the page or a fragment of it: a cache (the browser's, on Back) must tell them apart.
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


@login_required
@require_GET
def gallery_page(request: HttpRequest) -> HttpResponse:
    return _render_gallery(request, request.GET)


@login_required
@require_GET
def project_gallery_page(request: HttpRequest, project_id: uuid.UUID) -> HttpResponse:
    return _render_gallery(request, request.GET, project=project_get_for_user(request.user, project_id))


def _return_to(request: HttpRequest) -> tuple[str, QueryDict, Project | None]:
    """The gallery page the bulk form came from (only ours): its URL, its query and its project."""
    fallback = reverse("studio:gallery")
    target = request.POST.get("next", "")
    if not target or not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                         require_https=request.is_secure()):
        return fallback, QueryDict(), None
    parts = urlsplit(target)
    try:
        match = resolve(parts.path)
    except Resolver404:
        return fallback, QueryDict(), None
    if match.view_name == "studio:project-gallery":
        project = project_get_for_user(request.user, match.kwargs["project_id"])
        return target, QueryDict(parts.query), project
    if match.view_name == "studio:gallery":
        return target, QueryDict(parts.query), None
    return fallback, QueryDict(), None


def _rating(raw: str) -> int | None:
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        return -1  # the service names the field


@login_required
@require_POST
def gallery_bulk(request: HttpRequest) -> HttpResponse:
    """The bulk bar: one action on the selected assets through assets_bulk, all or nothing. htmx gets
    the status line back (and, on success, an event that reloads the results); without JavaScript a
    success redirects back to the gallery and an error shows the same page with the selection kept."""
    ids = request.POST.getlist("assets")
    action = request.POST.get("action", "")
    tags = comma_list(request.POST.get("tags", ""))
    project_id = request.POST.get("project") or None
    message, error = "", ""
    try:
        if not ids:
            raise InvalidRequest("Select at least one asset first.", fields={"assets": ["Nothing selected."]})
        count = assets_bulk(user=request.user, asset_ids=ids, action=action,
                            project_id=project_id if action == "move" else None,
                            tags=tags if action in ("tag", "untag") else None,
                            rating=_rating(request.POST.get("rating", "")) if action == "rate" else None)
        project_name = project_get_for_user(request.user, project_id).name if action == "move" else ""
        message = BULK_DONE[action].format(n=count, s="" if count == 1 else "s", project=project_name)
    except ServiceError as exc:
        error = exc.message
    except Http404:
        error = "Some of the selected assets (or the project) are not there any more; nothing was changed."
    if request.htmx:
        response = render(request, f"{TEMPLATE}#bulk-status", {"bulk_error": error, "bulk_message": message})
        if not error:
            response["HX-Trigger"] = "gallery-changed"
        return response
    back, params, project = _return_to(request)
    if error:
        return _render_gallery(request, params, project=project, selected=ids, bulk_error=error,
                               here=urlsplit(back).path)
    messages.success(request, message)
    return redirect(back)
