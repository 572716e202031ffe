from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from config.lookups import by_id_or_404
from generations.models import ACTIVE_STATUSES, AIModel, Generation, PriceCard


def model_list(*, operation: str | None = None, include_inactive: bool = False) -> QuerySet[AIModel]:
    qs = AIModel.objects.prefetch_related(Prefetch("price_cards", queryset=PriceCard.objects.order_by("-version")))
    if not include_inactive:
        qs = qs.filter(active=True)
    if operation:
        qs = qs.filter(operation=operation)
    return qs


def model_get(model_id: str) -> AIModel:
    model = model_list().filter(pk=model_id).first()
    if model is None:
        raise Http404(f"No model {model_id!r} in the catalog.")
    return model


def generation_list_for_user(user: Any) -> QuerySet[Generation]:
    """Generations the user may see: today, the ones in projects they own (see project_get_for_user)."""
    if not getattr(user, "is_authenticated", False):
        return Generation.objects.none()
    return Generation.objects.filter(project__owner=user)


def generation_get_for_user(user: Any, generation_id: uuid.UUID | str) -> Generation:
    return by_id_or_404(generation_list_for_user(user).select_related("model", "project", "price_card")
                        .prefetch_related("outputs"), generation_id, "No such generation.")


def generation_active_exists(*, project: Any) -> bool:
    return Generation.objects.filter(project=project, status__in=ACTIVE_STATUSES).exists()


def generation_recent_for_project(user: Any, project: Any, *, limit: int) -> list[Generation]:
    """The project's newest `limit` jobs, plus every still-active one however old it is, so a job list
    that polls while jobs run never loses sight of one. Active first, then newest."""
    base = generation_list_for_user(user).filter(project=project).select_related("model").prefetch_related("outputs")
    recent = list(base[:limit])
    seen = {g.pk for g in recent}
    # Fewer than `limit` rows means there is nothing older, active or not.
    older_active = list(base.filter(status__in=ACTIVE_STATUSES).exclude(pk__in=seen)) if len(recent) == limit else []
    return sorted(older_active + recent, key=lambda g: (not g.is_active, -g.created_at.timestamp()))
