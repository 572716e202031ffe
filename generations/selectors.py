from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.db.models import Case, Func, IntegerField, OuterRef, Prefetch, QuerySet, Subquery, When
from django.http import Http404

from core.errors import InvalidRequest
from core.lookups import by_id_or_404
from generations.models import ACTIVE_STATUSES, AIModel, Generation, PriceCard, Status

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User
    from projects.models import Project


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


def fallback_models_clean(ids: Any) -> list[str]:
    """A project's default fallback models: each a catalog model (active or not), at most five, in order,
    without repeats. An unknown id is refused naming every unknown one."""
    ids = [str(i) for i in dict.fromkeys(ids or [])][:5]
    known = set(AIModel.objects.filter(pk__in=ids).values_list("id", flat=True))
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InvalidRequest(f"Unknown model {unknown[0]!r}.", fields={"fallback_models": [f"Unknown model {i!r}." for i in unknown]})
    return ids


def generation_list_for_user(user: User | AnonymousUser) -> QuerySet[Generation]:
    """Generations the user may see: today, the ones in projects they own (see project_get_for_user)."""
    if not user.is_authenticated:
        return Generation.objects.none()
    return Generation.objects.filter(project__owner=user)


def with_queue_place(qs: QuerySet[Generation]) -> QuerySet[Generation]:
    """Annotate `queued_ahead` on each queued job: how many queued jobs, anyone's, were created before
    it. Every generation run waits on the one `generations` queue for the studio's own workers (before it is
    sent to any provider), oldest first, so this is how many jobs the workers take up before this one
    (0: it is next). A job waiting out a retry's backoff counts as ahead: an estimate, not a promise.
    One correlated subquery, so a page of jobs costs no extra query: a bare COUNT(*) (no GROUP BY, so
    it always answers one row) over the partial index gen_queued_created, which it matches exactly."""
    ahead = (Generation.objects.filter(status=Status.QUEUED, cancel_requested=False,
                                       created_at__lt=OuterRef("created_at"))
             .order_by().annotate(n=Func(template="COUNT(*)", output_field=IntegerField())).values("n"))
    return qs.annotate(queued_ahead=Case(When(status=Status.QUEUED, then=Subquery(ahead)),
                                         default=None, output_field=IntegerField()))


def generation_page_for_user(user: User | AnonymousUser) -> QuerySet[Generation]:
    """The API's job list: what a page of jobs shows, in a fixed number of queries."""
    return with_queue_place(generation_list_for_user(user).select_related("model").prefetch_related("outputs"))


def generation_get_for_user(user: User | AnonymousUser, generation_id: uuid.UUID | str) -> Generation:
    return by_id_or_404(with_queue_place(generation_list_for_user(user))
                        .select_related("model", "project", "price_card").prefetch_related("outputs"),
                        generation_id, "No such generation.")


def generation_active_exists(*, project: Project) -> bool:
    return Generation.objects.filter(project=project, status__in=ACTIVE_STATUSES).exists()


def generation_recent_for_project(user: User, project: Project, *, limit: int) -> list[Generation]:
    """The project's newest `limit` jobs, plus every still-active one however old it is, so a job list
    that polls while jobs run never loses sight of one. Active first, then newest."""
    base = with_queue_place(generation_list_for_user(user).filter(project=project)
                            .select_related("model").prefetch_related("outputs"))
    recent = list(base[:limit])
    seen = {g.pk for g in recent}
    # Fewer than `limit` rows means there is nothing older, active or not.
    older_active = list(base.filter(status__in=ACTIVE_STATUSES).exclude(pk__in=seen)) if len(recent) == limit else []
    return sorted(older_active + recent, key=lambda g: (not g.is_active, -g.created_at.timestamp()))
