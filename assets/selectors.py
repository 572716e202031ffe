from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from assets.models import Asset


def asset_list_for_user(user: Any, *, include_trashed: bool = False) -> QuerySet[Asset]:
    """Assets the user may see. Access follows the project (today: its owner), matching
    projects.selectors.project_get_for_user. Assets in the trash are left out unless asked for: they
    cannot be picked as inputs, shown in the gallery or exported until restored."""
    if not getattr(user, "is_authenticated", False):
        return Asset.objects.none()
    qs = Asset.objects.filter(owner=user)
    return qs if include_trashed else qs.filter(deleted_at__isnull=True)


def asset_get_for_user(user: Any, asset_id: uuid.UUID | str) -> Asset:
    try:
        pk = uuid.UUID(str(asset_id))
    except ValueError:
        raise Http404("No such asset.")
    # The trash is included: its page is where the user restores it.
    asset = asset_list_for_user(user, include_trashed=True).select_related("project", "generation__model").filter(pk=pk).first()
    if asset is None:
        raise Http404("No such asset.")
    return asset
