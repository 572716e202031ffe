"""Usage reads: what a user's (or a project's) generations cost, per day, month, model, provider or
project, and what the platform earned and spent per period (the admin's revenue page).

Everything here reads the `UsageDaily` rollup (one row per day, user, project and model, incremented
as each job ends by billing.hooks.usage_record) or ledger entries of one account over a time range,
never the generations table: a page load costs an index range scan whose size is the number of
days × models × projects in the range, however many generations there were.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDay, TruncMonth
from django.utils import timezone

from billing.models import Entry, LedgerAccount, UsageDaily
from core.errors import InvalidRequest

if TYPE_CHECKING:
    from accounts.models import User
    from projects.models import Project

GROUPINGS = ("day", "month", "model", "provider", "project")
DEFAULT_DAYS = 30
# A bound on one request's range: ten years of days is still a few thousand rollup rows per model,
# but a typo'd year (0202-…) should be an error, not a scan of everything.
MAX_DAYS = 3660
ZERO_USD = Decimal("0")


@dataclass(frozen=True)
class UsageRow:
    key: str  # "2025-03-14", "2025-03", a model id, a provider name, a project id ("" = deleted projects)
    label: str
    generations: int
    succeeded: int
    failed: int
    credits: int
    provider_cost_usd: Decimal

    @property
    def success_rate(self) -> float | None:
        """Succeeded / finished. Canceled jobs are not usage, so they count on neither side."""
        return self.succeeded / self.generations if self.generations else None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "generations": self.generations,
                "succeeded": self.succeeded, "failed": self.failed, "success_rate": self.success_rate,
                "credits": self.credits, "provider_cost_usd": str(self.provider_cost_usd)}


@dataclass(frozen=True)
class UsageQuery:
    group_by: str
    date_from: dt.date
    date_to: dt.date
    project: Project | None = None  # a Project the user may see, or None for all of the user's usage

    def as_params(self) -> dict[str, str]:
        params = {"group_by": self.group_by, "from": self.date_from.isoformat(), "to": self.date_to.isoformat()}
        if self.project is not None:
            params["project"] = str(self.project.pk)
        return params


def _parse_date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a date like 2025-03-14.", fields={name: ["Expected YYYY-MM-DD."]})


def usage_period_parse(*, params: Mapping[str, str], default_group_by: str = "day") -> UsageQuery:
    """Read `group_by`, `from` and `to` from query parameters. Defaults: the last 30 days, by day. The
    `project` parameter goes through the projects' access funnel, above billing: callers use
    `orchestration.usage.usage_query_parse`, which reads all four."""
    group_by = params.get("group_by") or default_group_by
    if group_by not in GROUPINGS:
        raise InvalidRequest(f"group_by must be one of {', '.join(GROUPINGS)}.",
                             fields={"group_by": [f"Choose one of {', '.join(GROUPINGS)}."]})
    today = timezone.localdate()
    date_to = _parse_date(params["to"], "to") if params.get("to") else today
    date_from = (_parse_date(params["from"], "from") if params.get("from")
                 else date_to - dt.timedelta(days=DEFAULT_DAYS - 1))
    if date_from > date_to:
        raise InvalidRequest("from must not be after to.", fields={"from": ["Must be on or before `to`."]})
    if (date_to - date_from).days >= MAX_DAYS:
        raise InvalidRequest(f"The range is limited to {MAX_DAYS} days.", fields={"from": ["Range too long."]})
    return UsageQuery(group_by=group_by, date_from=date_from, date_to=date_to)


def _scope(*, user: User, query: UsageQuery) -> QuerySet[UsageDaily]:
    # One user's rows over a range: the (user, day) index. A project's rows: the project foreign key's
    # index, narrowed by day. A project's usage is everyone's usage in it (today only its owner's; when
    # projects get members, their jobs count on the project page too), so that scope is not by user.
    rows = UsageDaily.objects.filter(day__gte=query.date_from, day__lte=query.date_to)
    if query.project is not None:
        return rows.filter(project=query.project)
    return rows.filter(user=user)


_SUMS = {
    "generations": Coalesce(Sum("generations"), 0),
    "succeeded": Coalesce(Sum("succeeded"), 0),
    "failed": Coalesce(Sum("failed"), 0),
    "credits": Coalesce(Sum("credits"), 0),
    "provider_cost_usd": Coalesce(Sum("provider_cost_usd"), Value(ZERO_USD),
                                  output_field=DecimalField(max_digits=20, decimal_places=6)),
}


def _row(key: str, label: str, sums: Mapping[str, Any]) -> UsageRow:
    return UsageRow(key=key, label=label, generations=int(sums["generations"]), succeeded=int(sums["succeeded"]),
                    failed=int(sums["failed"]), credits=int(sums["credits"]),
                    provider_cost_usd=Decimal(sums["provider_cost_usd"]).quantize(Decimal("0.000001")))


def _empty(key: str, label: str) -> UsageRow:
    return UsageRow(key=key, label=label, generations=0, succeeded=0, failed=0, credits=0, provider_cost_usd=ZERO_USD)


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def _months(start: dt.date, end: dt.date) -> list[dt.date]:
    months, month = [], start.replace(day=1)
    while month <= end:
        months.append(month)
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return months


def _as_date(value: Any) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def usage_rows(*, user: User, query: UsageQuery) -> list[UsageRow]:
    """One row per group. Days and months come in order with empty periods filled in (a chart's x axis
    must not skip quiet days); models, providers and projects come by credits spent, largest first."""
    rows = _scope(user=user, query=query).order_by()
    if query.group_by == "day":
        found = {r["day"]: r for r in rows.values("day").annotate(**_SUMS)}
        return [_row(day.isoformat(), f"{day.day} {day:%b %Y}", found[day]) if day in found
                else _empty(day.isoformat(), f"{day.day} {day:%b %Y}")
                for day in _days(query.date_from, query.date_to)]
    if query.group_by == "month":
        months = {_as_date(r["month"]): r
                  for r in rows.annotate(month=TruncMonth("day")).values("month").annotate(**_SUMS)}
        return [_row(m.strftime("%Y-%m"), m.strftime("%b %Y"), months[m]) if m in months
                else _empty(m.strftime("%Y-%m"), m.strftime("%b %Y"))
                for m in _months(query.date_from, query.date_to)]
    if query.group_by == "model":
        result = [_row(r["model"], r["model"], r) for r in rows.values("model").annotate(**_SUMS)]
    elif query.group_by == "provider":
        result = [_row(r["provider"], r["provider"], r) for r in rows.values("provider").annotate(**_SUMS)]
    else:
        result = [_row(str(r["project_id"] or ""), r["project__name"] or "(deleted project)", r)
                  for r in rows.values("project_id", "project__name").annotate(**_SUMS)]
    return sorted(result, key=lambda row: (-row.credits, -row.generations, row.label))


def usage_totals(*, user: User, query: UsageQuery) -> UsageRow:
    sums = _scope(user=user, query=query).aggregate(**_SUMS)
    return _row("total", "Total", sums)


@dataclass(frozen=True)
class ProjectCost:
    generations: int
    credits: int
    provider_cost_usd: Decimal


def project_cost_total(project: Project) -> ProjectCost:
    """The project's running cost since it began: one aggregate over its rollup rows (the project
    foreign key's index), so the project page pays one query however many jobs it ran."""
    sums = UsageDaily.objects.filter(project=project).aggregate(
        generations=_SUMS["generations"], credits=_SUMS["credits"], provider_cost_usd=_SUMS["provider_cost_usd"])
    return ProjectCost(generations=int(sums["generations"]), credits=int(sums["credits"]),
                       provider_cost_usd=Decimal(sums["provider_cost_usd"]).quantize(Decimal("0.000001")))


# --- the platform: revenue, provider spend and margin (admin) -------------------------------------------

@dataclass(frozen=True)
class RevenueRow:
    period: dt.date  # the day, or the first of the month
    label: str
    credits_charged: int  # net credits posted to the revenue account (generation charges)
    generations: int
    provider_cost_usd: Decimal  # what providers billed us for those jobs (platform keys)
    stripe_credits_sold: int  # credits bought through Stripe Checkout
    stripe_credits_refunded: int  # credits clawed back after Stripe refunds

    @property
    def revenue_usd(self) -> Decimal:
        """Credits charged at the nominal rate (settings.CREDITS_PER_USD credits to the dollar). Plans
        may charge more credits per provider dollar; this values the credit itself."""
        return (Decimal(self.credits_charged) / Decimal(settings.CREDITS_PER_USD)).quantize(Decimal("0.01"))

    @property
    def margin_usd(self) -> Decimal:
        return (self.revenue_usd - self.provider_cost_usd).quantize(Decimal("0.01"))

    @property
    def margin_rate(self) -> float | None:
        return float(self.margin_usd / self.revenue_usd) if self.revenue_usd else None


def revenue_by_period(*, period: str, date_from: dt.date, date_to: dt.date) -> list[RevenueRow]:
    """Per day or month, newest first: three grouped queries, each an index range scan (entries of one
    account by time; rollup rows by day). Days follow the current time zone, as the rollup's do."""
    if period not in ("day", "month"):
        raise InvalidRequest("period must be day or month.")
    trunc = TruncMonth if period == "month" else TruncDay
    tz = timezone.get_current_timezone()
    start = timezone.make_aware(dt.datetime.combine(date_from, dt.time.min), tz)
    end = timezone.make_aware(dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min), tz)
    codes = dict(LedgerAccount.objects.filter(code__in=["revenue", "stripe"]).values_list("code", "pk"))

    # Rows of values(), each differently annotated below: their keys are the query's, not Entry's fields.
    def entries(code: str) -> QuerySet[Any, Any]:
        return (Entry.objects.filter(account_id=codes.get(code, -1), created_at__gte=start, created_at__lt=end)
                .annotate(p=trunc("created_at", tzinfo=tz)).values("p").order_by())

    charged = {_as_date(r["p"]): int(r["s"]) for r in entries("revenue").annotate(s=Sum("amount"))}
    # The Stripe clearing account is debited when credits are sold and credited when a refund claws
    # them back (see AccountKind.STRIPE).
    stripe = {_as_date(r["p"]): r for r in entries("stripe").annotate(
        sold=Coalesce(Sum("amount", filter=Q(amount__lt=0)), 0),
        refunded=Coalesce(Sum("amount", filter=Q(amount__gt=0)), 0))}
    usage = {_as_date(r["p"]): r for r in UsageDaily.objects.filter(day__gte=date_from, day__lte=date_to)
             .annotate(p=trunc("day") if period == "month" else F("day")).values("p").order_by()
             .annotate(cost=_SUMS["provider_cost_usd"], generations=_SUMS["generations"])}
    periods = _months(date_from, date_to) if period == "month" else _days(date_from, date_to)
    rows = []
    for p in reversed(periods):
        use: Mapping[str, Any] = usage.get(p, {})
        sold: Mapping[str, Any] = stripe.get(p, {})
        rows.append(RevenueRow(
            period=p, label=p.strftime("%b %Y") if period == "month" else p.isoformat(),
            credits_charged=charged.get(p, 0), generations=int(use.get("generations", 0)),
            provider_cost_usd=Decimal(use.get("cost", ZERO_USD)).quantize(Decimal("0.000001")),
            stripe_credits_sold=-int(sold.get("sold", 0)), stripe_credits_refunded=int(sold.get("refunded", 0)),
        ))
    return rows


def revenue_total(rows: list[RevenueRow]) -> RevenueRow:
    return RevenueRow(
        period=rows[-1].period if rows else timezone.localdate(), label="Total",
        credits_charged=sum(r.credits_charged for r in rows), generations=sum(r.generations for r in rows),
        provider_cost_usd=sum((r.provider_cost_usd for r in rows), ZERO_USD),
        stripe_credits_sold=sum(r.stripe_credits_sold for r in rows),
        stripe_credits_refunded=sum(r.stripe_credits_refunded for r in rows),
    )
