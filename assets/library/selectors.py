from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.db.models import Case, CharField, Count, F, Q, QuerySet, Value, When

from assets.library.gallery import gallery_query, keyset_page
from assets.models import Asset, PreviewStatus, Tag
from core.lookups import by_id_or_404

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User


def asset_list_for_user(user: User | AnonymousUser, *, include_trashed: bool = False) -> QuerySet[Asset]:
    """Assets the user may see. Access follows the project (today: its owner), matching
    projects.selectors.project_get_for_user. Assets in the trash are left out unless asked for: they
    cannot be picked as inputs, shown in the gallery or exported until restored."""
    if not user.is_authenticated:
        return Asset.objects.none()
    qs = Asset.objects.filter(owner=user)
    return qs if include_trashed else qs.filter(deleted_at__isnull=True)


def ready_thumb_small(prefix: str = "") -> Case:
    """An asset's small WebP thumbnail's stored name while its previews are ready, else "" (`prefix`
    reaches the asset through a relation, e.g. "asset__"): for covers (projects, collections), which
    show the thumbnail or the kind's icon, never the original file."""
    return Case(When(**{f"{prefix}preview_status": PreviewStatus.READY}, then=F(f"{prefix}thumb_small")),
                default=Value(""), output_field=CharField())


def asset_get_for_user(user: User | AnonymousUser, asset_id: uuid.UUID | str) -> Asset:
    # The trash is included: its page is where the user restores it.
    return by_id_or_404(asset_list_for_user(user, include_trashed=True).select_related("project", "generation__model"),
                        asset_id, "No such asset.")


def asset_gallery_for_user(user: User, params: Mapping[str, Any]) -> Any:
    """One keyset page of the user's gallery (assets.library.gallery.GalleryPage) for these query parameters:
    filters, search, sort, cursor and page size, each checked (InvalidRequest names a bad one; a
    project the user may not see is a 404). Two queries at any depth: the page, and its tags (set as
    `asset.tag_names`)."""
    query = gallery_query(user=user, params=params, queryset=asset_list_for_user(user, include_trashed=True))
    page = keyset_page(query.queryset.defer("search_text"), sort=query.sort, cursor=query.cursor,
                       size=query.page_size)
    asset_tag_names_attach(page.assets)
    return page


def asset_tag_names_attach(assets: list[Asset]) -> None:
    """Set `tag_names` (sorted) on each asset, in one query. prefetch_related("tags") would do the
    same but builds a related manager's queryset per asset, which at fifty assets costs several times
    the query itself."""
    names: dict[uuid.UUID, list[str]] = {asset.pk: [] for asset in assets}
    if names:
        rows = (Asset.tags.through.objects.filter(asset_id__in=names).order_by("tag__name")
                .values_list("asset_id", "tag__name"))
        for asset_id, name in rows:
            names[asset_id].append(name)
    for asset in assets:
        asset.tag_names = names[asset.pk]


def tag_list_for_user(user: User | AnonymousUser, *, with_counts: bool = False) -> QuerySet[Tag]:
    """The user's tags by name. `with_counts` annotates `asset_count`, the assets outside the trash
    carrying each tag: a grouped count over the user's tag links, so the API's tag list pays it,
    never the gallery page."""
    if not user.is_authenticated:
        return Tag.objects.none()
    tags = Tag.objects.filter(owner=user).order_by("name")
    if with_counts:
        tags = tags.annotate(asset_count=Count("assets", filter=Q(assets__deleted_at__isnull=True)))
    return tags
