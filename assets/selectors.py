from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from assets.models import Asset


def asset_list_for_user(user: Any) -> QuerySet[Asset]:
    """Assets the user may see. Access follows the project (today: its owner), matching
    projects.selectors.project_get_for_user."""
    if not getattr(user, "is_authenticated", False):
        return Asset.objects.none()
    return Asset.objects.filter(owner=user)


def asset_get_for_user(user: Any, asset_id: uuid.UUID | str) -> Asset:
    try:
        pk = uuid.UUID(str(asset_id))
    except ValueError:
        raise Http404("No such asset.")
    asset = asset_list_for_user(user).select_related("project", "generation__model").filter(pk=pk).first()
    if asset is None:
        raise Http404("No such asset.")
    return asset
