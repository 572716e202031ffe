"""Collections: a user's ordered sets of assets, optionally tied to one of their projects.

Reads come through `collection_list_for_user` / `collection_get_for_user` (another user's collection
is a 404, never a 403). Every write locks the collection's row first (`select_for_update`), so two
concurrent edits of one collection run one after the other and positions stay dense: after any write
the items are numbered 0..n-1 with no gaps and no repeats.

Assets in the trash stay in their collections but are hidden: they keep their slot (a restore puts
them back where they were), they are not counted, offered for reordering or shown through a share.
The daily purge deletes trashed assets for good, which deletes their items and can leave a gap in the
numbering; order is by position, so a gap is never visible, and the next write closes it.

Positions in the API and on the page are the index among the *visible* items (0 = first).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, UUIDField, Value
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from assets.library.selectors import asset_list_for_user, ready_thumb_small
from assets.models import Asset, Collection, CollectionItem
from core.errors import Conflict, InvalidRequest
from core.lookups import by_id_or_404, id_list_clean
from core.text import description_clean, name_clean
from projects.selectors import project_get_for_user

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User
    from projects.models import Project

MAX_ITEMS = 1000  # per collection: the item list is returned whole, so it stays bounded
MAX_NAME = 120
MAX_DESCRIPTION = 2000
UNSET: Any = object()


# --- selectors -------------------------------------------------------------------------------------------

def collection_list_for_user(user: User | AnonymousUser) -> QuerySet[Collection]:
    if not user.is_authenticated:
        return Collection.objects.none()
    return Collection.objects.filter(owner=user)


def collection_list_with_stats_for_user(user: User) -> QuerySet[Collection]:
    """The user's collections, most recently changed first, each with `item_count` (visible items),
    `cover_id` (the first visible image) and `cover_thumb` (its small WebP thumbnail once made, else
    ""), as correlated subqueries: one query for the list."""
    visible = CollectionItem.objects.filter(collection=OuterRef("pk"), asset__deleted_at__isnull=True)
    count = visible.order_by().values("collection").annotate(n=Count("pk")).values("n")[:1]
    cover = visible.filter(asset__kind="image").order_by("position")
    return collection_list_for_user(user).select_related("project").annotate(
        item_count=Coalesce(Subquery(count, output_field=IntegerField()), Value(0)),
        cover_id=Subquery(cover.values("asset_id")[:1], output_field=UUIDField()),
        cover_thumb=Subquery(cover.annotate(thumb=ready_thumb_small("asset__")).values("thumb")[:1]),
    ).order_by("-updated_at", "-id")


def collection_get_for_user(user: User | AnonymousUser, collection_id: Any) -> Collection:
    return by_id_or_404(collection_list_for_user(user).select_related("project"), collection_id, "No such collection.")


def collection_items(collection: Collection) -> QuerySet[CollectionItem]:
    """The visible items (assets not in the trash) in order, each with its asset."""
    return (CollectionItem.objects.filter(collection=collection, asset__deleted_at__isnull=True,
                                          asset__owner_id=collection.owner_id)
            .select_related("asset").prefetch_related("asset__tags").order_by("position", "id"))


def collection_assets(collection: Collection) -> list[Asset]:
    """The visible assets in order, with `.position` set to their index among the visible items."""
    assets = []
    for index, item in enumerate(collection_items(collection)[:MAX_ITEMS]):
        # Set for this page, not columns: the templates and the API read them off the asset.
        item.asset.position = index  # type: ignore[attr-defined]
        item.asset.added_at = item.added_at  # type: ignore[attr-defined]
        assets.append(item.asset)
    return assets


def collections_containing(user: User, asset: Asset) -> QuerySet[Collection]:
    return collection_list_for_user(user).filter(items__asset=asset).order_by("name")


# --- services --------------------------------------------------------------------------------------------

def _clean_name(name: Any) -> str:
    return name_clean(name, max_length=MAX_NAME, missing="A collection needs a name.", missing_field="Required.",
                      too_long=f"A collection's name is at most {MAX_NAME} characters.", collapse_spaces=True)


def _clean_description(description: Any) -> str:
    return description_clean(description, max_length=MAX_DESCRIPTION, strip=True)


def _project_or_none(user: User, project_id: Any) -> Project | None:
    if project_id in (None, ""):
        return None
    return project_get_for_user(user, project_id, write=True)


@transaction.atomic
def collection_create(*, user: User, name: Any, description: Any = "", project_id: Any = None) -> Collection:
    return Collection.objects.create(owner=user, name=_clean_name(name), description=_clean_description(description),
                                     project=_project_or_none(user, project_id))


def _locked(user: User, collection_id: Any) -> Collection:
    """The collection, its row locked until the transaction ends: every write to its items takes
    this lock first, so concurrent writes to one collection are serialised."""
    return by_id_or_404(collection_list_for_user(user).select_for_update(of=("self",)).select_related("project"),
                        collection_id, "No such collection.")


def _touch(collection: Collection) -> None:
    collection.updated_at = timezone.now()
    collection.save(update_fields=["updated_at"])


@transaction.atomic
def collection_update(*, user: User, collection_id: Any, name: Any = UNSET, description: Any = UNSET,
                      project_id: Any = UNSET) -> Collection:
    collection = _locked(user, collection_id)
    if name is not UNSET:
        collection.name = _clean_name(name)
    if description is not UNSET:
        collection.description = _clean_description(description)
    if project_id is not UNSET:
        collection.project = _project_or_none(user, project_id)
    collection.updated_at = timezone.now()
    collection.save()
    return collection


@transaction.atomic
def collection_delete(*, user: User, collection_id: Any) -> None:
    """Deletes the collection and its share links; the assets stay where they are."""
    _locked(user, collection_id).delete()


def _asset_ids(raw: Any, *, field: str = "assets") -> list[uuid.UUID]:
    return id_list_clean(raw, limit=MAX_ITEMS, field=field)


def _all_items(collection: Collection) -> list[CollectionItem]:
    """Every item, trashed ones included, in order (call with the collection locked)."""
    return list(CollectionItem.objects.filter(collection=collection).select_related("asset")
                .only("id", "position", "asset_id", "asset__deleted_at").order_by("position", "id"))


def _write_order(collection: Collection, items: list[CollectionItem], visible_order: list[CollectionItem]) -> None:
    """Number the items 0..n-1: trashed items keep their slots, the visible ones fill the other slots
    in `visible_order`. Only rows whose position changes are written."""
    queue = iter(visible_order)
    ordered = [item if item.asset.deleted_at is not None else next(queue) for item in items]
    changed = []
    for index, item in enumerate(ordered):
        if item.position != index:
            item.position = index
            changed.append(item)
    if changed:
        CollectionItem.objects.bulk_update(changed, ["position"], batch_size=500)
    _touch(collection)


def _visible_index(position: Any, size: int, *, field: str = "position") -> int:
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise InvalidRequest("A position is a whole number from 0 (the first place).",
                             fields={field: ["Expected an integer ≥ 0."]})
    return min(position, size)


@transaction.atomic
def collection_items_add(*, user: User, collection_id: Any, asset_ids: Any, position: Any = None) -> int:
    """Add the user's assets (not in the trash) at the end, or from `position` on. Assets already in
    the collection stay where they are. All or nothing: an id the user cannot see is a 404. Returns
    how many were added."""
    collection = _locked(user, collection_id)
    ids = list(dict.fromkeys(_asset_ids(asset_ids)))
    found = set(asset_list_for_user(user).filter(pk__in=ids).values_list("pk", flat=True))
    if len(found) != len(ids):
        raise Http404("No such asset.")
    items = _all_items(collection)
    present = {item.asset_id for item in items}
    new_ids = [a for a in ids if a not in present]
    if not new_ids:
        return 0
    if len(items) + len(new_ids) > MAX_ITEMS:
        raise InvalidRequest(f"A collection holds at most {MAX_ITEMS} assets.",
                             fields={"assets": [f"This would make {len(items) + len(new_ids)}."]})
    visible = [item for item in items if item.asset.deleted_at is None]
    at = len(visible) if position is None else _visible_index(position, len(visible))
    # After the last position in use, not the count: purged items leave gaps until the next write renumbers.
    start = items[-1].position + 1 if items else 0
    created = CollectionItem.objects.bulk_create([
        CollectionItem(collection=collection, asset_id=asset_id, position=start + n) for n, asset_id in enumerate(new_ids)
    ])
    if at == len(visible):
        _touch(collection)
        return len(created)
    # Inserting before the end: renumber with the new items in place.
    fresh = {item.asset_id: item for item in CollectionItem.objects.filter(collection=collection, asset_id__in=new_ids)
             .select_related("asset").only("id", "position", "asset_id", "asset__deleted_at")}
    new_items = [fresh[a] for a in new_ids]
    _write_order(collection, items + new_items, visible[:at] + new_items + visible[at:])
    return len(created)


@transaction.atomic
def collection_items_remove(*, user: User, collection_id: Any, asset_ids: Any) -> int:
    """Take assets out of the collection (the assets themselves stay). Ids not in it are ignored.
    Returns how many were removed."""
    collection = _locked(user, collection_id)
    ids = _asset_ids(asset_ids)
    removed, _ = CollectionItem.objects.filter(collection=collection, asset_id__in=ids).delete()
    if removed:
        items = _all_items(collection)
        _write_order(collection, items, [item for item in items if item.asset.deleted_at is None])
    return removed


@transaction.atomic
def collection_reorder(*, user: User, collection_id: Any, asset_ids: Any) -> list[uuid.UUID]:
    """Put the visible items in this order. `asset_ids` names each visible item exactly once; a list
    that does not match (an item added or removed meanwhile) is a 409 and changes nothing."""
    collection = _locked(user, collection_id)
    ids = _asset_ids(asset_ids)
    if len(set(ids)) != len(ids):
        raise InvalidRequest("The order names an asset twice.", fields={"assets": ["Duplicate id."]})
    items = _all_items(collection)
    visible = {item.asset_id: item for item in items if item.asset.deleted_at is None}
    if set(ids) != set(visible):
        missing, extra = len(set(visible) - set(ids)), len(set(ids) - set(visible))
        raise Conflict(f"The order must name every item in the collection exactly once ({missing} missing, "
                       f"{extra} not in it). Reload the collection and try again.", code="stale_order",
                       fields={"assets": ["Does not match the collection's items."]})
    _write_order(collection, items, [visible[a] for a in ids])
    return ids


@transaction.atomic
def collection_item_move(*, user: User, collection_id: Any, asset_id: Any, position: Any) -> int:
    """Move one item to `position` among the visible items (past the end means last). Returns the
    position it ended at."""
    collection = _locked(user, collection_id)
    try:
        target = uuid.UUID(str(asset_id))
    except ValueError:
        raise InvalidRequest("Asset ids are UUIDs.", fields={"asset": ["Not a valid id."]}) from None
    items = _all_items(collection)
    visible = [item for item in items if item.asset.deleted_at is None]
    moving = next((item for item in visible if item.asset_id == target), None)
    if moving is None:
        raise Http404("That asset is not in this collection.")
    rest = [item for item in visible if item is not moving]
    at = _visible_index(position, len(rest))
    _write_order(collection, items, rest[:at] + [moving] + rest[at:])
    return at


def collection_options_for_asset(user: User, asset: Asset) -> list[dict[str, Any]]:
    """For the asset page's "add to collection": each of the user's collections and whether it holds
    the asset already, in one query."""
    rows = collection_list_for_user(user).annotate(
        has_asset=Count("items", filter=Q(items__asset=asset))).order_by("-updated_at").values("id", "name", "has_asset")
    return [{"id": row["id"], "name": row["name"], "has_asset": bool(row["has_asset"])} for row in rows[:200]]
