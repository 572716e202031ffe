"""Share links: read-only views of one asset, a collection or a project for anyone holding the link.

The token (`secrets.token_urlsafe(32)`, 256 bits) is the link's only secret; it is shown to the owner
alone. A link is *live* until it is revoked or expires; a link that is not live, or an unknown token,
is a 404 with no hint of which (never a 403). What a visitor sees is only what the owner chose: the
files, their names and kinds, the title of what was shared, and the prompt if `show_prompt`; never
costs, the provider or model, notes, tags, ratings, metadata, or the owner. Images are served without
the metadata inside the file (assets.sharing.strip), where tools write prompts and models too.

What a link reaches: an asset link its asset; a collection link the collection's visible items; a
project link the project's assets. Assets in the trash vanish from every share (an asset link to a
trashed asset is a 404) until restored. Everything a share serves is looked up through
`share_assets(share)`, so an asset id outside the share is a 404.

A password is stored as a Django password hash. Unlocking remembers the link in the session, keyed by
a hash of the stored password hash, so a link whose password changes locks again.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.http import urlencode

from assets.library.collections import collection_get_for_user
from assets.library.gallery import SORTS, cursor_decode, keyset_page
from assets.library.selectors import asset_get_for_user
from assets.models import Asset, ShareLink, ShareTarget
from core.errors import InvalidRequest
from core.lookups import by_id_or_404
from projects.selectors import project_get_for_user

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User
    from assets.models import Collection
    from projects.models import Project

MAX_PASSWORD = 128
MIN_PASSWORD = 4
MAX_EXPIRY = timedelta(days=366)
SESSION_KEY = "share_unlocked"


# --- selectors -------------------------------------------------------------------------------------------

def share_list_for_user(user: User | AnonymousUser, *, live: bool = False) -> QuerySet[ShareLink]:
    """The user's links, newest first; `live` keeps only those that work now (see share_is_live)."""
    if not user.is_authenticated:
        return ShareLink.objects.none()
    qs = ShareLink.objects.filter(owner=user).select_related("asset", "collection", "project")
    if live:
        qs = qs.filter(Q(revoked_at__isnull=True), Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()),
                       Q(asset__isnull=True) | Q(asset__deleted_at__isnull=True))
    return qs


def share_get_for_user(user: User | AnonymousUser, share_id: Any) -> ShareLink:
    return by_id_or_404(share_list_for_user(user), share_id, "No such share link.")


def share_is_live(share: ShareLink, *, now: datetime | None = None) -> bool:
    return share_status(share, now=now) == "live"


def share_status(share: ShareLink, *, now: datetime | None = None) -> str:
    if share.revoked_at is not None:
        return "revoked"
    if share.expires_at is not None and share.expires_at <= (now or timezone.now()):
        return "expired"
    if share.target == ShareTarget.ASSET and share.asset.deleted_at is not None:
        return "trashed"
    return "live"


def share_get_public(token: Any) -> ShareLink:
    """The live link with this token, or 404 (unknown, revoked, expired or pointing at the trash: the
    same 404 for each)."""
    if not isinstance(token, str) or not 20 <= len(token) <= 64:
        raise Http404("Not found.")
    share = ShareLink.objects.select_related("asset", "collection", "project").filter(token=token).first()
    if share is None or not share_is_live(share):
        raise Http404("Not found.")
    return share


def share_title(share: ShareLink) -> str:
    return {ShareTarget.ASSET: lambda: share.asset.name, ShareTarget.COLLECTION: lambda: share.collection.name,
            ShareTarget.PROJECT: lambda: share.project.name}[share.target]()


def share_assets(share: ShareLink) -> QuerySet[Asset]:
    """Every asset the link reaches, in display order: the one asset, the collection's order, or the
    project's newest first. Only the link owner's assets, never the trash."""
    visible = Asset.objects.filter(owner_id=share.owner_id, deleted_at__isnull=True)
    if share.target == ShareTarget.ASSET:
        return visible.filter(pk=share.asset_id)
    if share.target == ShareTarget.COLLECTION:
        return (visible.filter(collection_items__collection_id=share.collection_id)
                .order_by("collection_items__position", "collection_items__id"))
    return visible.filter(project_id=share.project_id).order_by("-created_at", "-id")


@dataclass
class SharedPage:
    assets: list[Asset]
    next_query: str | None  # the query string of the next page ("cursor=…" or "page=N"), or None
    previous_query: str | None


def share_assets_page(share: ShareLink, params: Mapping[str, str], *, size: int) -> SharedPage:
    """One page of a shared collection or project. A project can hold 100,000 assets, so its pages are
    keyset pages newest first, as the gallery's (assets.library.gallery): page 1,000 costs what page 1 costs. A
    collection is a hand-ordered selection, paged by number in its own order. A cursor or page number
    that is not one of ours starts again from the first page: this is a public page, not an API."""
    assets = share_assets(share)
    if share.target == ShareTarget.PROJECT:
        sort = SORTS["newest"]
        try:
            cursor = cursor_decode(params["cursor"], sort) if params.get("cursor") else None
        except InvalidRequest:
            cursor = None
        page = keyset_page(assets, sort=sort, cursor=cursor, size=size)
        return SharedPage(page.assets, page.next_cursor and urlencode({"cursor": page.next_cursor}),
                          page.previous_cursor and urlencode({"cursor": page.previous_cursor}))
    raw = params.get("page", "1")
    number = int(raw) if re.fullmatch(r"[0-9]{1,6}", raw) and int(raw) > 0 else 1
    rows = list(assets[(number - 1) * size:number * size + 1])
    return SharedPage(rows[:size], f"page={number + 1}" if len(rows) > size else None,
                      f"page={number - 1}" if number > 1 else None)


def share_asset_get(share: ShareLink, asset_id: Any) -> Asset:
    return by_id_or_404(share_assets(share), asset_id, "Not found.")


# --- passwords and the session ---------------------------------------------------------------------------

def _unlock_mark(share: ShareLink) -> str:
    return salted_hmac("assets.sharing.shares.unlock", f"{share.pk}:{share.password}").hexdigest()[:32]


def share_is_unlocked(share: ShareLink, session: Any) -> bool:
    if not share.password:
        return True
    return (session.get(SESSION_KEY) or {}).get(str(share.pk)) == _unlock_mark(share)


def share_unlock(share: ShareLink, session: Any, password: str) -> bool:
    """Check the password; on success remember the link in this session. Rate limiting is the
    caller's (the public view counts attempts per IP and link)."""
    if not share.password or not check_password(password or "", share.password):
        return False
    unlocked = dict(session.get(SESSION_KEY) or {})
    unlocked[str(share.pk)] = _unlock_mark(share)
    session[SESSION_KEY] = unlocked
    return True


def share_record_view(share: ShareLink) -> None:
    # One UPDATE … SET view_count = view_count + 1: concurrent views never lose a count.
    ShareLink.objects.filter(pk=share.pk).update(view_count=F("view_count") + 1)


# --- services --------------------------------------------------------------------------------------------

def _clean_expiry(expires_at: Any) -> datetime | None:
    if expires_at in (None, ""):
        return None
    if not isinstance(expires_at, datetime):
        raise InvalidRequest("expires_at is a date and time.", fields={"expires_at": ["Expected a datetime."]})
    if timezone.is_naive(expires_at):
        expires_at = timezone.make_aware(expires_at)
    now = timezone.now()
    if expires_at <= now:
        raise InvalidRequest("The expiry is in the past.", fields={"expires_at": ["Must be in the future."]})
    if expires_at - now > MAX_EXPIRY:
        raise InvalidRequest("A link expires within a year at most (or never).",
                             fields={"expires_at": ["At most 366 days ahead."]})
    return expires_at


def _clean_password(password: Any) -> str:
    if password in (None, ""):
        return ""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidRequest(f"A link's password is {MIN_PASSWORD} to {MAX_PASSWORD} characters.",
                             fields={"password": [f"{MIN_PASSWORD} to {MAX_PASSWORD} characters."]})
    return make_password(password)


@transaction.atomic
def share_create(*, user: User, target: Any, target_id: Any, show_prompt: Any = False, password: Any = "",
                 expires_at: Any = None) -> ShareLink:
    """A new live link to the user's asset, collection or project (404 if they may not see it)."""
    if target not in ShareTarget.values:
        raise InvalidRequest(f"Share an {', a '.join(ShareTarget.values)}.",
                             fields={"target": [f"One of: {', '.join(ShareTarget.values)}."]})
    if not isinstance(show_prompt, bool):
        raise InvalidRequest("show_prompt is true or false.", fields={"show_prompt": ["Expected a boolean."]})
    link = ShareLink(owner=user, target=target, show_prompt=show_prompt, password=_clean_password(password),
                     expires_at=_clean_expiry(expires_at), token=secrets.token_urlsafe(32))
    if target == ShareTarget.ASSET:
        asset = asset_get_for_user(user, target_id)
        if asset.deleted_at is not None:
            raise InvalidRequest("This asset is in the trash; restore it to share it.",
                                 code="trashed", fields={"target_id": ["In the trash."]})
        link.asset = asset
    elif target == ShareTarget.COLLECTION:
        link.collection = collection_get_for_user(user, target_id)
    else:
        link.project = project_get_for_user(user, target_id, write=True)
    link.save()
    return link


@transaction.atomic
def share_revoke(*, user: User, share_id: Any) -> ShareLink:
    """Revoke the link at once (idempotent: a second revoke keeps the first time)."""
    share = share_get_for_user(user, share_id)
    ShareLink.objects.filter(pk=share.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    share.refresh_from_db(fields=["revoked_at"])
    return share


def shares_for_object(user: User, *, asset: Asset | None = None, collection: Collection | None = None,
                      project: Project | None = None) -> list[ShareLink]:
    """The user's links to one object, newest first (the asset and collection pages list them)."""
    condition = Q(asset=asset) if asset is not None else Q(collection=collection) if collection is not None \
        else Q(project=project)
    return list(share_list_for_user(user).filter(condition)[:50])
