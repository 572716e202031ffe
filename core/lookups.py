"""Ids that came from a URL or a request body: one row fetched by its id, or a list of ids checked."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from django.http import Http404

from core.errors import InvalidRequest

M = TypeVar("M", bound=Model)


def by_id_or_404(queryset: QuerySet[M], raw_id: Any, message: str) -> M:
    """The row of `queryset` (already narrowed to what the caller may see) whose primary key is `raw_id`,
    in any form uuid.UUID accepts. A malformed id and a row that is not there (or not the caller's) are
    the same 404 with `message`: never a 500 for a bad id, never a 403 that confirms a row exists."""
    try:
        pk = uuid.UUID(str(raw_id))
    except ValueError:
        raise Http404(message) from None
    row = queryset.filter(pk=pk).first()
    if row is None:
        raise Http404(message)
    return row


def id_list_clean(raw: Any, *, limit: int, field: str = "assets", empty: str = "Choose at least one asset.",
                  too_many: str = "") -> list[uuid.UUID]:
    """A request's list of asset ids as UUIDs, in order (duplicates kept: the caller decides what they
    mean). Not a non-empty list, over `limit`, or an id that is not a UUID: a 400 naming `field`."""
    if not isinstance(raw, list | tuple) or not raw:
        raise InvalidRequest(empty, fields={field: ["Expected a non-empty list of ids."]})
    if len(raw) > limit:
        raise InvalidRequest(too_many or f"At most {limit} assets at a time.", fields={field: ["Too many."]})
    try:
        return [uuid.UUID(str(value)) for value in raw]
    except ValueError:
        raise InvalidRequest("Asset ids are UUIDs.", fields={field: ["Not a valid id."]}) from None
