"""Organising assets: names, notes, ratings, favourites, tags, moving between projects, the trash.

Every function takes the acting user and reaches assets only through `asset_list_for_user`, so an id
the user may not see is a 404 and changes nothing. Bulk operations check every id before changing any:
one bad id refuses the whole request. Whatever changes a name, the notes or the tags rewrites
`search_text` in the same transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.db.models.functions import Lower
from django.http import Http404
from django.utils import timezone

from assets.library.selectors import asset_list_for_user
from assets.models import Asset, Tag
from assets.services import asset_search_text
from assets.storage import asset_file_names, files_delete_on_commit
from core.errors import InvalidRequest
from core.lookups import id_list_clean
from projects.selectors import project_get_for_user

if TYPE_CHECKING:
    from accounts.models import User

TRASH_DAYS = 30
MAX_TAGS_PER_ASSET = 50
MAX_NAME = 255  # Asset.name's column
MAX_BULK = 500
UNSET: Any = object()


def tag_name_clean(raw: Any) -> str:
    if not isinstance(raw, str):
        raise InvalidRequest("A tag must be text.", fields={"tags": ["Expected a list of strings."]})
    name = re.sub(r"\s+", " ", raw).strip().lstrip("#")
    if not name:
        raise InvalidRequest("A tag cannot be empty.", fields={"tags": ["Empty tag."]})
    if len(name) > 64:
        raise InvalidRequest(f"The tag {name[:20]!r}… is longer than 64 characters.",
                             fields={"tags": ["At most 64 characters."]})
    return name


def tags_get_or_create(*, user: User, names: Iterable[Any]) -> list[Tag]:
    """The user's tags by these names (case-insensitive), created as needed, in the order given."""
    tags: dict[str, Tag] = {}
    for raw in names:
        name = tag_name_clean(raw)
        key = name.lower()
        if key in tags:
            continue
        tag = Tag.objects.filter(owner=user, name__iexact=name).first()
        if tag is None:
            try:
                with transaction.atomic():
                    tag = Tag.objects.create(owner=user, name=name)
            except IntegrityError:  # created meanwhile by a concurrent request
                tag = Tag.objects.get(owner=user, name__iexact=name)
        tags[key] = tag
    return list(tags.values())


def _refresh_search_text(assets: Iterable[Asset]) -> None:
    assets = list(assets)
    names: dict[uuid.UUID, list[str]] = {a.pk: [] for a in assets}
    for asset_id, name in Asset.tags.through.objects.filter(asset_id__in=names).values_list("asset_id", "tag__name"):
        names[asset_id].append(name)
    for asset in assets:
        asset.search_text = asset_search_text(asset, sorted(names[asset.pk]))
    Asset.objects.bulk_update(assets, ["search_text"])


def _clean_rating(rating: Any) -> int | None:
    if rating is None or rating == 0:
        return None  # 0 or null clears the rating
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidRequest("A rating is a whole number from 1 to 5 (or null to clear it).",
                             fields={"rating": ["Expected 1-5 or null."]})
    return rating


def _clean_name(name: Any, asset: Asset) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("A name cannot be empty.", fields={"name": ["Required."]})
    name = name.strip().replace("/", "-").replace("\\", "-")
    # Keep the real extension: downloads are named after it, and the type comes from the content anyway.
    ext = asset.name.rsplit(".", 1)[-1] if "." in asset.name else ""
    if ext and not name.lower().endswith(f".{ext.lower()}"):
        name = f"{name}.{ext}"
    if len(name) > MAX_NAME:
        limit = f"At most {MAX_NAME} characters" + (f", with the .{ext} ending." if ext else ".")
        raise InvalidRequest(f"A name is at most {MAX_NAME} characters.", fields={"name": [limit]})
    return name


@transaction.atomic
def asset_update(*, user: User, asset_id: Any, name: Any = UNSET, notes: Any = UNSET, rating: Any = UNSET,
                 favourite: Any = UNSET, tags: Any = UNSET) -> Asset:
    """Change what the user may change on one asset; arguments left out stay as they are. `tags`
    replaces the asset's tags with these names."""
    asset = _locked(user, [asset_id], include_trashed=True)[0]
    fields: list[str] = []
    if name is not UNSET:
        asset.name = _clean_name(name, asset)
        fields.append("name")
    if notes is not UNSET:
        if not isinstance(notes, str) or len(notes) > 10_000:
            raise InvalidRequest("Notes are text of at most 10,000 characters.", fields={"notes": ["Too long."]})
        asset.notes = notes
        fields.append("notes")
    if rating is not UNSET:
        asset.rating = _clean_rating(rating)
        fields.append("rating")
    if favourite is not UNSET:
        if not isinstance(favourite, bool):
            raise InvalidRequest("favourite is true or false.", fields={"favourite": ["Expected a boolean."]})
        asset.favourite = favourite
        fields.append("favourite")
    if tags is not UNSET:
        if not isinstance(tags, list | tuple):
            raise InvalidRequest("tags is a list of names.", fields={"tags": ["Expected a list of strings."]})
        if len(tags) > MAX_TAGS_PER_ASSET:
            raise InvalidRequest(f"At most {MAX_TAGS_PER_ASSET} tags per asset.", fields={"tags": ["Too many tags."]})
        asset.tags.set(tags_get_or_create(user=user, names=tags))
    if fields:
        asset.save(update_fields=fields)
    if tags is not UNSET or {"name", "notes"} & set(fields):
        _refresh_search_text([asset])
    return asset


def _ids(asset_ids: Any) -> list[uuid.UUID]:
    return list(dict.fromkeys(id_list_clean(asset_ids, limit=MAX_BULK)))


def _locked(user: User, asset_ids: Any, *, include_trashed: bool = False) -> list[Asset]:
    ids = _ids(asset_ids)
    assets = list(asset_list_for_user(user, include_trashed=include_trashed).select_for_update().filter(pk__in=ids))
    if len(assets) != len(ids):
        raise Http404("No such asset.")
    return assets


BULK_ACTIONS = ("move", "tag", "untag", "favourite", "unfavourite", "rate", "trash", "restore")


@transaction.atomic
def assets_bulk(*, user: User, asset_ids: Any, action: str, project_id: Any = None, tags: Any = None,
                rating: Any = None) -> int:
    """One action on many assets, all or nothing. Returns how many assets it applied to."""
    if action not in BULK_ACTIONS:
        raise InvalidRequest(f"Unknown action {action!r}.", fields={"action": [f"One of: {', '.join(BULK_ACTIONS)}."]})
    assets = _locked(user, asset_ids, include_trashed=action == "restore")
    ids = [a.pk for a in assets]
    qs = Asset.objects.filter(pk__in=ids)
    if action == "move":
        if project_id is None:
            raise InvalidRequest("Choose the project to move to.", fields={"project": ["Required for move."]})
        project = project_get_for_user(user, project_id, write=True)
        return qs.update(project=project)
    if action in ("tag", "untag"):
        if not isinstance(tags, list | tuple) or not tags:
            raise InvalidRequest("Name at least one tag.", fields={"tags": ["Expected a non-empty list."]})
        if len(tags) > MAX_TAGS_PER_ASSET:
            raise InvalidRequest(f"At most {MAX_TAGS_PER_ASSET} tags at a time.", fields={"tags": ["Too many tags."]})
        through = Asset.tags.through
        if action == "tag":
            found = tags_get_or_create(user=user, names=tags)
            through.objects.bulk_create([through(asset_id=a, tag_id=t.pk) for a in ids for t in found],
                                        ignore_conflicts=True)
            # django-stubs checks the filter against the through model's fields, not the annotation.
            crowded = (through.objects.filter(asset_id__in=ids).values("asset_id").annotate(n=Count("id"))  # type: ignore[misc]
                       .filter(n__gt=MAX_TAGS_PER_ASSET).count())
            if crowded:  # the transaction rolls back: all or nothing
                raise InvalidRequest(
                    f"{crowded} of these assets would have more than {MAX_TAGS_PER_ASSET} tags; nothing was tagged.",
                    fields={"tags": [f"At most {MAX_TAGS_PER_ASSET} tags per asset."]})
        else:
            # Tag names are unique whatever their case, and found whatever case they are typed in.
            names = {tag_name_clean(t).lower() for t in tags}
            found = list(Tag.objects.alias(key=Lower("name")).filter(owner=user, key__in=names))
            through.objects.filter(asset_id__in=ids, tag__in=found).delete()
        _refresh_search_text(assets)
        return len(ids)
    if action in ("favourite", "unfavourite"):
        return qs.update(favourite=action == "favourite")
    if action == "rate":
        return qs.update(rating=_clean_rating(rating))
    if action == "trash":
        return qs.filter(deleted_at__isnull=True).update(deleted_at=timezone.now())
    return qs.filter(deleted_at__isnull=False).update(deleted_at=None)  # restore


def asset_trash(*, user: User, asset_id: Any) -> int:
    return assets_bulk(user=user, asset_ids=[asset_id], action="trash")


def asset_restore(*, user: User, asset_id: Any) -> int:
    return assets_bulk(user=user, asset_ids=[asset_id], action="restore")


def assets_delete(assets: Iterable[Asset]) -> int:
    """Delete rows for good and their files once the transaction commits (a rollback keeps both)."""
    assets = list(assets)
    names = [name for asset in assets for name in asset_file_names(asset)]
    Asset.objects.filter(pk__in=[a.pk for a in assets]).delete()
    files_delete_on_commit(names)
    return len(assets)


@transaction.atomic
def asset_delete_forever(*, user: User, asset_id: Any) -> Asset:
    """Delete one asset of the user's trash for good, now; only the trash deletes for good, so an asset
    that is not in it (or not the user's) is a 404."""
    asset = (asset_list_for_user(user, include_trashed=True).filter(deleted_at__isnull=False)
             .select_for_update().filter(pk=asset_id).first())
    if asset is None:
        raise Http404("No such asset in your trash.")
    assets_delete([asset])
    return asset


@transaction.atomic
def assets_trash_empty(*, user: User) -> int:
    """The user's "empty trash now"."""
    return assets_delete(asset_list_for_user(user, include_trashed=True).filter(deleted_at__isnull=False)
                         .select_for_update())


def assets_purge_trash(*, now: Any = None, batch: int = 500) -> int:
    """Delete assets that have been in the trash for TRASH_DAYS (beat runs this daily), in batches so
    a large purge never holds one long transaction."""
    cutoff = (now or timezone.now()) - timedelta(days=TRASH_DAYS)
    purged = 0
    while True:
        with transaction.atomic():
            chunk = list(Asset.objects.select_for_update(skip_locked=True)
                         .filter(deleted_at__isnull=False, deleted_at__lte=cutoff).order_by("deleted_at")[:batch])
            if not chunk:
                return purged
            purged += assets_delete(chunk)
