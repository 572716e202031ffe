"""Share links on the web: the owner's list (/shares/), creating and revoking links, and the public
pages anyone with a link sees (/s/<token>, its assets' pages, files and thumbnails).

The public side shows only what assets.sharing.shares lets through. Every public response carries
`X-Robots-Tag: noindex` (a link is not for search engines) and `Referrer-Policy: no-referrer` (the
token in the URL must not leak to other sites through the Referer header; the password prompt says
`same-origin` instead, see `_public`); password-protected content
is never cached (`no-store`). Files are served with `nosniff`, a sandbox CSP and a Content-Disposition,
as the owner's own downloads are; images without the metadata inside them (assets.sharing.strip). An unknown,
revoked or expired token, or an asset outside the share, is a plain 404.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_ratelimit.core import is_ratelimited

from assets.links import share_url
from assets.models import Asset, ShareLink, ShareTarget
from assets.sharing import strip
from assets.sharing.shares import (
    MAX_PASSWORD,
    share_asset_get,
    share_assets_page,
    share_create,
    share_get_public,
    share_is_unlocked,
    share_list_for_user,
    share_record_view,
    share_revoke,
    share_status,
    share_title,
    share_unlock,
)
from assets.storage import content_disposition
from core.errors import ServiceError
from projects.selectors import project_list_for_user
from studio.views.display import kind_icon

UNLOCK_RATE = "10/m"  # password attempts per IP address and link
PAGE_SIZE = 100
EXPIRY_CHOICES = [("", "Never"), ("1", "In 1 day"), ("7", "In 7 days"), ("30", "In 30 days"),
                  ("90", "In 90 days"), ("365", "In a year")]
PAGE_CSP = ("default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
FILE_CSP = "default-src 'none'; sandbox"


class ShareForm(forms.Form):
    target = forms.ChoiceField(choices=ShareTarget.choices)
    target_id = forms.UUIDField()
    show_prompt = forms.BooleanField(required=False)
    password = forms.CharField(required=False, max_length=MAX_PASSWORD, strip=False)
    expires_in = forms.ChoiceField(required=False, choices=EXPIRY_CHOICES)


# --- the owner's pages -----------------------------------------------------------------------------------------

def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return fallback


@login_required
@require_GET
def shares_page(request: HttpRequest) -> HttpResponse:
    shares = list(share_list_for_user(request.user)[:200])
    for share in shares:
        share.url = share_url(share, request)
        share.title = share_title(share)
        share.state = share_status(share)
    return render(request, "studio/shares.html", {
        "shares": shares,
        "share_projects": list(project_list_for_user(request.user).order_by("name")[:200]),
        "expiry_choices": EXPIRY_CHOICES,
    })


@login_required
@require_POST
def share_create_view(request: HttpRequest) -> HttpResponse:
    fallback = reverse("studio:shares")
    form = ShareForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Could not create the link: " + "; ".join(
            f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()))
        return redirect(_safe_next(request, fallback))
    data = form.cleaned_data
    days = data.get("expires_in")
    try:
        share = share_create(user=request.user, target=data["target"], target_id=data["target_id"],
                             show_prompt=data["show_prompt"], password=data["password"],
                             expires_at=timezone.now() + timedelta(days=int(days)) if days else None)
    except ServiceError as exc:
        messages.error(request, f"Could not create the link: {exc.message}")
        return redirect(_safe_next(request, fallback))
    messages.success(request, f"Link created: {share_url(share, request)}")
    return redirect(_safe_next(request, fallback))


@login_required
@require_POST
def share_revoke_view(request: HttpRequest, share_id: uuid.UUID) -> HttpResponse:
    share = share_revoke(user=request.user, share_id=share_id)
    messages.success(request, f"Revoked the link to {share_title(share)}: it no longer opens.")
    return redirect(_safe_next(request, reverse("studio:shares")))


# --- the public side -------------------------------------------------------------------------------------------

def _public(response: HttpResponse, share: ShareLink, *, page: bool = True, prompt: bool = False) -> HttpResponse:
    response["X-Robots-Tag"] = "noindex, nofollow"
    # The password prompt is the one page that posts a form: under `no-referrer` browsers send
    # `Origin: null` with it, which Django's CSRF check refuses. `same-origin` sends the origin to us
    # and still nothing to any other site.
    response["Referrer-Policy"] = "same-origin" if prompt else "no-referrer"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = PAGE_CSP if page else FILE_CSP
    if share.password:
        # Behind a password: never stored by the browser or any cache on the way.
        response["Cache-Control"] = "no-store"
    else:
        response["Cache-Control"] = "private, max-age=300" if not page else "private, no-cache"
    response["Vary"] = "Cookie"
    return response


def _locked_response(request: HttpRequest, share: ShareLink) -> HttpResponse | None:
    """The password prompt if the link has a password this session has not given; else None."""
    if share_is_unlocked(share, request.session):
        return None
    return _public(render(request, "studio/shared_password.html", {"token": share.token}), share, prompt=True)


def _decorate(assets: list[Asset]) -> list[Asset]:
    for asset in assets:
        asset.icon = kind_icon(asset.kind)
    return assets


@require_http_methods(["GET", "POST"])
def shared_page(request: HttpRequest, token: str) -> HttpResponse:
    share = share_get_public(token)
    if request.method == "POST":
        return _unlock(request, share)
    locked = _locked_response(request, share)
    if locked is not None:
        return locked
    share_record_view(share)
    ctx: dict[str, Any] = {"share": share, "title": share_title(share), "token": share.token}
    if share.target == ShareTarget.ASSET:
        asset = share_asset_get(share, share.asset_id)
        return _public(render(request, "studio/shared_asset.html", {**ctx, "asset": _decorate([asset])[0]}), share)
    page = share_assets_page(share, request.GET, size=PAGE_SIZE)
    return _public(render(request, "studio/shared_gallery.html", {
        **ctx, "assets": _decorate(page.assets), "next_query": page.next_query, "previous_query": page.previous_query,
    }), share)


def _unlock(request: HttpRequest, share: ShareLink) -> HttpResponse:
    if not share.password:
        return _public(redirect("studio:shared", token=share.token), share)
    # Counted before the password is checked, right or wrong: 10 guesses a minute per address and link.
    if is_ratelimited(request, group=f"share-unlock:{share.pk}", key="ip", rate=UNLOCK_RATE, increment=True):
        error, status = "Too many attempts. Wait a minute and try again.", 429
    elif share_unlock(share, request.session, request.POST.get("password", "")[:MAX_PASSWORD]):
        return _public(redirect("studio:shared", token=share.token), share)
    else:
        error, status = "That is not the password.", 400
    return _public(render(request, "studio/shared_password.html", {"error": error, "token": share.token},
                          status=status), share, prompt=True)


@require_GET
def shared_asset_page(request: HttpRequest, token: str, asset_id: uuid.UUID) -> HttpResponse:
    """One asset of a shared collection or project, larger."""
    share = share_get_public(token)
    locked = _locked_response(request, share)  # first: until unlocked, every asset id gets the same prompt
    if locked is not None:
        return locked
    asset = share_asset_get(share, asset_id)
    return _public(render(request, "studio/shared_asset.html", {
        "share": share, "title": share_title(share), "token": share.token, "asset": _decorate([asset])[0],
        "in_gallery": share.target != ShareTarget.ASSET,
    }), share)


def _unlocked_asset(request: HttpRequest, token: str, asset_id: uuid.UUID) -> tuple[ShareLink, Asset]:
    """The share and one of its assets, for the file routes: a link still locked in this session is the
    same 404 as an asset outside it."""
    share = share_get_public(token)
    if not share_is_unlocked(share, request.session):
        raise Http404("Not found.")
    return share, share_asset_get(share, asset_id)


def _file_response(share: ShareLink, field: Any, *, attachment: bool, name: str, mime: str) -> HttpResponse:
    response = FileResponse(field.open("rb"), as_attachment=attachment, filename=name, content_type=mime)
    return _public(response, share, page=False)


def _preview_response(share: ShareLink, asset: Asset, field: Any, *, attachment: bool = False) -> HttpResponse:
    stem = asset.name.rsplit(".", 1)[0]
    return _file_response(share, field, attachment=attachment, name=f"{stem}.webp", mime="image/webp")


def _original_response(share: ShareLink, asset: Asset, *, attachment: bool) -> HttpResponse:
    """The asset's own file. An image is served without the metadata inside it (assets.sharing.strip: prompts,
    models and workflows that generation tools write there, EXIF, XMP), which a share must not show;
    one whose structure does not parse falls back to its large preview, or is not served."""
    if asset.mime not in strip.MIMES:
        return _file_response(share, asset.file, attachment=attachment, name=asset.name, mime=asset.mime)
    fh = asset.file.open("rb")
    fh.seek(0, 2)
    result = strip.stripped(fh, mime=asset.mime, size=fh.tell())
    if result is None:
        fh.close()
        if not asset.thumb_large:
            raise Http404("Not found.")
        return _preview_response(share, asset, asset.thumb_large, attachment=attachment)
    chunks, size = result
    response = StreamingHttpResponse(chunks, content_type=asset.mime)
    response["Content-Length"] = str(size)
    response["Content-Disposition"] = content_disposition(asset.name, inline=not attachment)
    return _public(response, share, page=False)


@require_GET
def shared_file(request: HttpRequest, token: str, asset_id: uuid.UUID) -> HttpResponse:
    share, asset = _unlocked_asset(request, token, asset_id)
    inline = asset.mime.startswith(("image/", "video/", "audio/")) and request.GET.get("download") != "1"
    return _original_response(share, asset, attachment=not inline)


@require_GET
def shared_thumb(request: HttpRequest, token: str, asset_id: uuid.UUID) -> HttpResponse:
    """The asset's thumbnail (?size=small for the small one), falling back to the image itself."""
    share, asset = _unlocked_asset(request, token, asset_id)
    small = request.GET.get("size") == "small"
    thumb = (asset.thumb_small or asset.thumb_large) if small else (asset.thumb_large or asset.thumb_small)
    if thumb and thumb.name:
        return _preview_response(share, asset, thumb)
    if asset.kind == "image":
        return _original_response(share, asset, attachment=False)
    raise Http404("Not found.")
