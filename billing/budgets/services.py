"""Budgets: caps on credits for a project (total or monthly) and for a user (monthly, across all their
projects), and the alerts they raise.

A budget is checked with the ledger hold, in the same transaction, under the budget rows' locks:
`budget_hold` locks the user's budget, then the project's (always in that order, and always after the
wallet, which `credits_hold` locks first), reads the period's `BudgetUsage`, refuses the job if
spent + held + this job's credits would pass the limit, and adds the credits to `held`. Settling moves
the job's held credits to `spent` (the actual charge; the rest is freed) and releasing frees them,
under the same locks. Concurrent submits therefore queue on the budget row and cannot overshoot it.

Usage is spent + held: credits on hold are committed to running jobs, so a budget is 80 % used when
80 % of it is spent or reserved, and the 100 % alert comes when the last job that fits is submitted,
not minutes later when it finishes. Alerts at 50, 80 and 100 % are recorded once per budget, period and
threshold (`BudgetAlert`'s unique constraint), shown in the app as a `Notification` and emailed after
commit. A job that crosses several thresholds at once sends one message, for the highest.

Jobs that hold no credits (on the user's own key with no platform fee, or free local models) neither
count against budgets nor are refused by them.

A refused job raises `BudgetExceeded`: HTTP 402, like insufficient credits (both mean "this cannot be
paid for as things stand", and clients already handle 402 that way); the code `budget_exceeded` and
`extra["budget"]` tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from rest_framework import status

from billing.models import Budget, BudgetAlert, BudgetPeriod, BudgetUsage, Notification
from billing.wording import credits_display
from core.errors import ServiceError

if TYPE_CHECKING:
    # Signatures only: billing sits below projects and generations and imports neither.
    from accounts.models import User
    from generations.models import Generation
    from projects.models import Project

THRESHOLDS = (50, 80, 100)
# Total budgets have one period, which starts here.
TOTAL_PERIOD_START = date(2000, 1, 1)
# Budget.limit_credits is a PositiveIntegerField: PostgreSQL's integer, whose largest value this is.
# A larger limit is refused as bad input rather than failing in the database.
LIMIT_MAX = 2_147_483_647


class BudgetExceeded(ServiceError):
    code = "budget_exceeded"
    http_status = status.HTTP_402_PAYMENT_REQUIRED


def period_start(period: str, at: Any = None) -> date:
    if period == BudgetPeriod.TOTAL:
        return TOTAL_PERIOD_START
    return timezone.localdate(at or timezone.now()).replace(day=1)


def budget_label(budget: Budget, *, project_name: str | None = None) -> str:
    """'the project “Trailer” monthly budget' or 'your monthly budget'."""
    if budget.project_id is None:
        return f"your {budget.period} budget"
    name = project_name if project_name is not None else budget.project.name  # type: ignore[union-attr]  # project_id is set
    return f"the project “{name}” {budget.period} budget"


# --- reads ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    period_start: date
    spent: int
    held: int
    alerts: tuple[int, ...]

    @property
    def limit(self) -> int:
        return self.budget.limit_credits

    @property
    def used(self) -> int:
        return self.spent + self.held

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def percent(self) -> int:
        if self.limit <= 0:
            return 100
        return min(100, self.used * 100 // self.limit)

    @property
    def level(self) -> str:
        """For the bar's colour: ok, warn (≥ 80 %), full (100 %)."""
        return "full" if self.percent >= 100 else "warn" if self.percent >= 80 else "ok"

    def as_dict(self) -> dict[str, Any]:
        budget = self.budget
        return {"id": budget.pk, "scope": "project" if budget.project_id else "user",
                "project": str(budget.project_id) if budget.project_id else None, "period": budget.period,
                "period_start": self.period_start.isoformat(), "limit": self.limit, "spent": self.spent,
                "held": self.held, "used": self.used, "remaining": self.remaining, "percent": self.percent,
                "alerts": list(self.alerts)}


def budget_get(*, project: Project | None = None, user: User | None = None) -> Budget | None:
    if (project is None) == (user is None):
        raise ValueError("A budget belongs to a project or to a user.")
    if project is not None:
        return Budget.objects.filter(project=project).first()
    return Budget.objects.filter(user=user).first()


def budget_status(budget: Budget, *, at: Any = None) -> BudgetStatus:
    start = period_start(budget.period, at)
    usage = BudgetUsage.objects.filter(budget=budget, period_start=start).values("spent", "held").first()
    alerts = BudgetAlert.objects.filter(budget=budget, period_start=start).order_by("threshold")
    return BudgetStatus(budget=budget, period_start=start, spent=usage["spent"] if usage else 0,
                        held=usage["held"] if usage else 0,
                        alerts=tuple(alerts.values_list("threshold", flat=True)))


def notification_list_for_user(user: User) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user)


# --- settings (API, web, admin) --------------------------------------------------------------------------

@transaction.atomic
def budget_clear(*, project: Project | None = None, user: User | None = None) -> bool:
    """Remove the budget (its usage and alerts go with it). Jobs in flight that it counted finish
    without touching any budget."""
    if (project is None) == (user is None):
        raise ValueError("A budget belongs to a project or to a user.")
    owner = {"project": project} if project is not None else {"user": user}
    # Lock the budget before the delete cascades to its usage rows: holds lock budget then usage, and
    # the cascade alone would take them the other way round (a deadlock on PostgreSQL).
    budget = Budget.objects.select_for_update().filter(**owner).first()
    if budget is None:
        return False
    budget.delete()
    return True


@transaction.atomic
def notification_mark_read(*, user: User, notification_id: int) -> Notification:
    notification = get_object_or_404(Notification, pk=notification_id, user=user)
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification


@transaction.atomic
def notifications_mark_all_read(*, user: User) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())


# --- the generation pipeline's hooks (see billing.hooks) ------------------------------------------------

def _lock_budgets(*, user_id: Any, project_id: Any) -> list[Budget]:
    """The budgets that apply to a job, locked in the fixed order user budget, project budget."""
    budgets = []
    for owner in ({"user_id": user_id}, {"project_id": project_id}):
        budget = Budget.objects.select_for_update().filter(**owner).first()
        if budget is not None:
            budgets.append(budget)
    return budgets


def _lock_usage(budget: Budget, start: date) -> BudgetUsage:
    usage, _ = BudgetUsage.objects.select_for_update().get_or_create(budget=budget, period_start=start)
    return usage


def _lock_counted(usage_ids: list[int]) -> list[tuple[Budget, BudgetUsage]]:
    """A job's usage rows with their budgets locked, in the same order as `_lock_budgets`. Rows of
    budgets removed since are gone, and skipped."""
    rows = sorted(BudgetUsage.objects.filter(pk__in=usage_ids).select_related("budget"),
                  key=lambda usage: (usage.budget.user_id is None, usage.budget_id))
    locked = []
    for row in rows:
        budget = Budget.objects.select_for_update().filter(pk=row.budget_id).first()
        usage = BudgetUsage.objects.select_for_update().filter(pk=row.pk).first()
        if budget is not None and usage is not None:
            locked.append((budget, usage))
    return locked


def _refuse(budget: Budget, usage: BudgetUsage, *, credits: int, project: Project) -> BudgetExceeded:
    label = budget_label(budget, project_name=project.name if budget.project_id else None)
    used = usage.spent + usage.held
    message = (f"This would exceed {label}: {used} of {credits_display(budget.limit_credits)} used, "
               f"this job needs {credits}.")
    message = message[0].upper() + message[1:]
    return BudgetExceeded(message, extra={"budget": {
        "id": budget.pk, "scope": "project" if budget.project_id else "user",
        "project": str(budget.project_id) if budget.project_id else None, "period": budget.period,
        "period_start": usage.period_start.isoformat(), "limit": budget.limit_credits, "spent": usage.spent,
        "held": usage.held, "used": used, "required": credits}})


def budget_hold(*, generation: Generation, credits: int) -> list[int]:
    """Count a new job's held credits against the budgets that apply, or raise BudgetExceeded having
    changed nothing. Returns the usage rows it was counted in (for `Generation.budget_usage_ids`).
    Runs inside the hold's transaction, after `credits_hold` has locked the wallet."""
    if credits <= 0:
        return []
    counted: list[tuple[Budget, BudgetUsage]] = []
    for budget in _lock_budgets(user_id=generation.user_id, project_id=generation.project_id):
        usage = _lock_usage(budget, period_start(budget.period))
        if usage.spent + usage.held + credits > budget.limit_credits:
            raise _refuse(budget, usage, credits=credits, project=generation.project)
        counted.append((budget, usage))
    for budget, usage in counted:
        _add_held(budget, usage, credits, project=generation.project)
    return [usage.pk for _, usage in counted]


def _add_held(budget: Budget, usage: BudgetUsage, credits: int, *, project: Project) -> None:
    usage.held += credits
    BudgetUsage.objects.filter(pk=usage.pk).update(held=F("held") + credits)
    _alert(budget, usage, after=usage.spent + usage.held, project=project)


def _counted(generation: Generation) -> tuple[list[int], int]:
    """Read fresh: callers hold copies loaded before a fallback switch, or with deferred fields. The
    row is read through the class of the job handed in: billing sits below generations and does not
    import them (docs/ARCHITECTURE.md, "Layers")."""
    row = type(generation).objects.filter(pk=generation.pk).values_list("budget_usage_ids", "credits_held").first()
    return (list(row[0] or []), int(row[1])) if row else ([], 0)


def budget_settle(*, generation: Generation, charged: int) -> None:
    """The job finished and was charged `charged` credits: move its held credits to spent (the charge)
    and free the rest. Runs in the settle's transaction, after `hold_settle` locked the wallet."""
    usage_ids, held = _counted(generation)
    for _budget, usage in _lock_counted(usage_ids):
        BudgetUsage.objects.filter(pk=usage.pk).update(held=F("held") - held, spent=F("spent") + charged)


def budget_release(*, generation: Generation) -> None:
    """The job ended without a charge: free its held credits."""
    usage_ids, held = _counted(generation)
    for _budget, usage in _lock_counted(usage_ids):
        BudgetUsage.objects.filter(pk=usage.pk).update(held=F("held") - held)


def budget_resize(*, generation: Generation, credits: int) -> list[int]:
    """A job moving to a fallback model holds `credits` instead: grow or shrink its share of the
    budgets it is counted in (growing is checked like a new hold and may raise BudgetExceeded). A job
    that was counted nowhere (it held nothing) is counted now, like a new one. Returns the usage rows."""
    usage_ids, held = _counted(generation)
    if not usage_ids:
        return budget_hold(generation=generation, credits=credits)
    locked = _lock_counted(usage_ids)
    delta = credits - held
    if delta > 0:
        for budget, usage in locked:
            if usage.spent + usage.held + delta > budget.limit_credits:
                raise _refuse(budget, usage, credits=credits, project=generation.project)
        for budget, usage in locked:
            _add_held(budget, usage, delta, project=generation.project)
    elif delta < 0:
        for _budget, usage in locked:
            BudgetUsage.objects.filter(pk=usage.pk).update(held=F("held") + delta)
    return [usage.pk for _, usage in locked]


# --- alerts ----------------------------------------------------------------------------------------------

def _alert(budget: Budget, usage: BudgetUsage, *, after: int, project: Project) -> None:
    """Record each threshold this increase reached for the first time in the period, and tell the
    budget's owner once, for the highest. Runs under the budget's lock, so no two jobs record the
    same threshold (and the unique constraint would refuse it if they did)."""
    limit = budget.limit_credits
    if limit <= 0:
        return
    # Every threshold at or under the new usage, not only those this job crossed: after the limit is
    # lowered, the next job still brings the alerts the new limit implies.
    reached = [t for t in THRESHOLDS if after * 100 >= t * limit]
    if not reached:
        return
    sent = set(BudgetAlert.objects.filter(budget=budget, period_start=usage.period_start, threshold__in=reached)
               .values_list("threshold", flat=True))
    new = [t for t in reached if t not in sent]
    if not new:
        return
    BudgetAlert.objects.bulk_create([BudgetAlert(budget=budget, period_start=usage.period_start, threshold=t)
                                     for t in new])
    _notify(budget, threshold=max(new), used=after, period_start=usage.period_start, project=project)


def _notify(budget: Budget, *, threshold: int, used: int, period_start: date, project: Project) -> None:
    user_model = get_user_model()
    if budget.project_id:
        recipient = user_model.objects.get(pk=project.owner_id)
        label = budget_label(budget, project_name=project.name)
        link = settings.SITE_URL + reverse("studio:project", kwargs={"project_id": budget.project_id})
        subject_name = f"project “{project.name}”"
    else:
        recipient = user_model.objects.get(pk=budget.user_id)  # type: ignore[misc]  # no project: the budget is the user's
        label = budget_label(budget)
        link = settings.SITE_URL + reverse("studio:account")
        subject_name = "your monthly budget"
    when = f" for {period_start:%B %Y}" if budget.period == BudgetPeriod.MONTHLY else ""
    state = "fully used" if threshold >= 100 else f"{threshold}% used"
    message = f"{label[0].upper()}{label[1:]} is {state}{when}: {used} of {credits_display(budget.limit_credits)} spent or on hold."
    if threshold >= 100:
        message += (" New jobs that need credits are refused until "
                    + ("next month or " if budget.period == BudgetPeriod.MONTHLY else "")
                    + "the limit is raised.")
    Notification.objects.create(user=recipient, kind=f"budget_{threshold}", message=message)
    if recipient.email:
        subject = f"Budget alert: {subject_name} at {threshold}%"
        body = f"{message}\n\n{link}\n"
        # After commit (a refused or rolled-back job sends nothing), and robust: a mail server that is
        # down must not turn a job that was accepted into an error.
        transaction.on_commit(lambda: send_mail(subject, body, None, [recipient.email]), robust=True)
