"""Setting a budget: a billing row that starts counting the jobs already in flight, whose rows it
locks and marks (`Generation.budget_usage_ids`). It writes both apps' rows, so it lives above them
(docs/ARCHITECTURE.md, "Layers"); the rest of budgets is billing.budgets.services."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Sum

from billing.budgets.services import LIMIT_MAX, period_start
from billing.models import Budget, BudgetPeriod, BudgetUsage, UsageDaily
from core.errors import InvalidRequest
from generations.models import ACTIVE_STATUSES, Generation

if TYPE_CHECKING:
    from accounts.models import User
    from projects.models import Project


@transaction.atomic
def budget_set(*, project: Project | None = None, user: User | None = None, limit_credits: int, period: str = BudgetPeriod.MONTHLY) -> Budget:
    """Create or change the budget of a project (total or monthly) or of a user (monthly). Changing the
    limit keeps the period's usage; a new budget, or a change of total ↔ monthly, starts with what was
    already charged in the period and the holds of jobs still running (`_count_earlier_use`)."""
    if (project is None) == (user is None):
        raise ValueError("A budget belongs to a project or to a user.")
    if period not in BudgetPeriod.values:
        raise InvalidRequest("period must be 'monthly' or 'total'.", fields={"period": ["Choose monthly or total."]})
    if user is not None and period != BudgetPeriod.MONTHLY:
        raise InvalidRequest("Your own budget is a monthly cap.", fields={"period": ["Only monthly is possible."]})
    if isinstance(limit_credits, bool) or not isinstance(limit_credits, int) or limit_credits < 0:
        raise InvalidRequest("The limit must be a whole number of credits, 0 or more.",
                             fields={"limit": ["A whole number of credits, 0 or more."]})
    if limit_credits > LIMIT_MAX:
        raise InvalidRequest(f"The limit can be at most {LIMIT_MAX} credits.",
                             fields={"limit": [f"At most {LIMIT_MAX}."]})
    owner = {"project": project} if project is not None else {"user": user}
    # Jobs in flight are locked before the budget, the order settle and release take them in
    # (generation row, wallet, budget), so none of them ends between being counted here and being
    # told which usage row counts it.
    in_flight = _in_flight(project=project, user=user)
    previous = Budget.objects.select_for_update().filter(**owner).values_list("period", flat=True).first()
    # update_or_create locks an existing row first, so a change waits for holds in flight against it.
    budget, _ = Budget.objects.update_or_create(**owner, defaults={"limit_credits": limit_credits, "period": period})
    if previous != period:  # a new budget (or one set again after clearing), or a new kind of period
        _count_earlier_use(budget, project=project, user=user, in_flight=in_flight)
    return budget


def _in_flight(*, project: Project | None, user: User | None) -> list[Generation]:
    """The owner's jobs that hold credits now, locked."""
    scope = {"project": project} if project is not None else {"user": user}
    return list(Generation.objects.select_for_update().filter(**scope, status__in=ACTIVE_STATUSES,
                                                              credits_held__gt=0)
                .only("pk", "credits_held", "budget_usage_ids").order_by("pk"))


def _count_earlier_use(budget: Budget, *, project: Project | None, user: User | None,
                       in_flight: list[Generation]) -> None:
    """A budget set now counts what its owner already used in the period: the credits charged since
    the period began (the daily usage rollups, the same days the budget's period covers) and the
    holds of jobs still running, which are then counted in this row like jobs submitted under the
    budget (settle moves their hold to spent, release frees it). Without this a total budget showed
    `spent: 0` on a project that had spent 8, a monthly cap set mid-month allowed a whole month more,
    and clearing and setting a budget again started the count over."""
    start = period_start(budget.period)
    rollups = UsageDaily.objects.filter(**({"project": project} if project is not None else {"user": user}))
    if budget.period != BudgetPeriod.TOTAL:
        rollups = rollups.filter(day__gte=start)
    spent = rollups.aggregate(total=Sum("credits"))["total"] or 0
    held = sum(job.credits_held for job in in_flight)
    # The count is set, not added to: switching total → monthly → total finds the total row kept from
    # before (usage rows go only with the budget), whose spend and running holds are in these figures
    # already.
    if not spent and not held:
        BudgetUsage.objects.filter(budget=budget, period_start=start).delete()
        return  # the first hold makes the row, as for any period
    usage, _ = BudgetUsage.objects.update_or_create(budget=budget, period_start=start,
                                                    defaults={"spent": spent, "held": held})
    for job in in_flight:
        if usage.pk not in (job.budget_usage_ids or []):
            Generation.objects.filter(pk=job.pk).update(budget_usage_ids=[*(job.budget_usage_ids or []), usage.pk])
