"""Plans and rate limits.

A user's plan is their `UserPlan`, else the default plan. It gives the credit rate used to price their
jobs and three limits, counted with django-ratelimit's fixed-window counters on the shared cache
(Redis in production, so every web process and worker sees one count; the file cache in development):

- generations per hour: API submits through `PlanRateThrottle` (before the view runs, so a refused
  submit costs nothing and DRF answers 429 with Retry-After); web submits through
  `generation_create(..., rate_limit=True)`, whose `RateLimited` the generate panel shows. Both count in
  the same window. The `generate` management command is not limited: it runs on the server, by
  someone with a shell there.
- uploads per day: API uploads through `PlanRateThrottle`; web uploads call `rate_limit_check` once
  per file.
- API calls per minute: every authenticated /api/v1 request, through `PlanRateThrottle`.

Every attempt counts, refused ones included (django-ratelimit's model: a client hammering a closed
door keeps it closed). A plan's limit is compared with the count at each call rather than baked into
the counter's cache key, so a plan change takes effect on the next request and keeps the count so far.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_ratelimit.core import get_usage
from rest_framework import exceptions, status
from rest_framework.exceptions import ErrorDetail
from rest_framework.throttling import BaseThrottle

from billing.models import Plan, UserPlan
from config.errors import ServiceError


@dataclass(frozen=True)
class Limit:
    field: str  # on Plan
    period: str  # django-ratelimit's unit: m, h, d
    noun: str


LIMITS = {
    "generations": Limit("generations_per_hour", "h", "generations per hour"),
    "uploads": Limit("uploads_per_day", "d", "uploads per day"),
    "api_calls": Limit("api_calls_per_minute", "m", "API calls per minute"),
}

# The API actions that are also counted against a per-plan limit, by the router's basename and the
# viewset action (so the views need no decorator and a refused request never reaches them).
API_ACTION_LIMITS = {
    ("generation", "create"): "generations",
    ("asset", "create"): "uploads",
}


# --- plans -------------------------------------------------------------------------------------------

def plan_for_user(user: Any) -> Plan:
    """The user's assigned plan, else the default one, in one query. With no default plan configured
    the model's defaults apply (an unsaved Plan), at the platform's credit rate."""
    if getattr(user, "pk", None) is not None:
        assigned = Q(pk__in=UserPlan.objects.filter(user_id=user.pk).values("plan_id"))
        # An assigned plan (is_default False, or the default plan itself) sorts before the default.
        plan = Plan.objects.filter(assigned | Q(is_default=True)).order_by("is_default").first()
    else:
        plan = Plan.objects.filter(is_default=True).first()
    return plan or Plan(code="default", name="Default", credits_per_usd=settings.CREDITS_PER_USD)


def credits_per_usd_for(*, user_id: Any) -> int:
    """The credit rate jobs of this user are priced at (the pipeline has ids, not user objects)."""
    assigned = Q(pk__in=UserPlan.objects.filter(user_id=user_id).values("plan_id"))
    rate = (Plan.objects.filter(assigned | Q(is_default=True)).order_by("is_default")
            .values_list("credits_per_usd", flat=True).first())
    return settings.CREDITS_PER_USD if rate is None else rate


def plan_rate(plan: Plan, group: str) -> str:
    """The plan's limit for `group` in django-ratelimit's notation, e.g. "10/h"."""
    limit = LIMITS[group]
    return f"{getattr(plan, limit.field)}/{limit.period}"


@transaction.atomic
def plan_assign(*, user: Any, plan: Plan) -> UserPlan:
    """Put `user` on `plan`; their next request is priced and limited by it."""
    assignment, _ = UserPlan.objects.update_or_create(user=user, defaults={"plan": plan})
    return assignment


# --- rate limits ---------------------------------------------------------------------------------------

class RateLimited(ServiceError):
    """A plan limit was reached. `retry_after` is in seconds; the message says when, in words."""

    code = "rate_limited"
    http_status = status.HTTP_429_TOO_MANY_REQUESTS

    def __init__(self, *, plan: Plan, group: str, limit: int, retry_after: int) -> None:
        spec = LIMITS[group]
        self.retry_after = max(1, retry_after)
        self.retry_at = timezone.now() + timedelta(seconds=self.retry_after)
        local = timezone.localtime(self.retry_at)
        message = (f"Rate limit reached: your {plan.name} plan allows {limit} {spec.noun}. "
                   f"Try again {_in_words(self.retry_after)} (at {local:%H:%M} {local.tzname()}).")
        super().__init__(message, extra={
            "limit": {"name": spec.field, "limit": limit, "plan": plan.code},
            "retry_after": self.retry_after, "retry_at": self.retry_at.isoformat(),
        })


def _in_words(seconds: int) -> str:
    if seconds < 60:
        return f"in {seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"in {minutes} minute{'s' if minutes != 1 else ''}"
    hours, minutes = divmod(minutes, 60)
    return f"in {hours} hours" + (f" {minutes} minutes" if minutes else "")


RateSpec = str | Callable[[str, Any], str]


def rate_limit_check(*, request: Any = None, user: Any, group: str, rate: RateSpec | None = None,
                     plan: Plan | None = None) -> None:
    """Count one `group` action by `user` and raise RateLimited if that goes over the limit.

    `rate` is "N/period" or django-ratelimit's callable `(group, request) -> rate`; by default the
    user's plan gives it. The counter's cache key holds the group, the period and the user, not the
    limit, so the same count is compared with whatever the plan says now."""
    plan = plan or plan_for_user(user)
    if rate is None:
        rate = plan_rate(plan, group)
    if callable(rate):
        rate = rate(group, request)
    limit, period = _parse_rate(rate)
    # get_usage rather than is_ratelimited: the same counter, plus the seconds left in the window,
    # which become Retry-After. The key rate "0/<period>s" keeps the key independent of the limit.
    usage = get_usage(request, group=f"plan:{group}", key=lambda _group, _request: str(user.pk),
                      rate=(0, period), increment=True)
    if usage is None:  # RATELIMIT_ENABLE = False
        return
    if usage["time_left"] < 0:
        # The cache failed (django-ratelimit reports it as limited with no time left): fail open,
        # a cache outage should not stop the studio.
        return
    if usage["count"] > limit:
        raise RateLimited(plan=plan, group=group, limit=limit, retry_after=usage["time_left"])


_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_rate(rate: str) -> tuple[int, int]:
    """"10/h" → (10, 3600); "5/10m" → (5, 600): django-ratelimit's notation."""
    count, _, span = rate.partition("/")
    digits = span.rstrip("smhd")
    unit = span[len(digits):] or "s"
    return int(count), _PERIOD_SECONDS[unit] * int(digits or 1)


class ApiRateLimited(exceptions.Throttled):
    """RateLimited as DRF's Throttled, so DRF's handler adds the Retry-After header."""

    default_code = "rate_limited"

    def __init__(self, source: RateLimited) -> None:
        super().__init__(wait=source.retry_after, code="rate_limited")
        self.detail = ErrorDetail(source.message, code="rate_limited")


class PlanRateThrottle(BaseThrottle):
    """The API's per-plan limits, keyed by user: every /api/v1 call counts against API calls per
    minute, and generation submits and uploads against their own limits as well. Anonymous requests
    (webhooks, the schema) are not counted: they are not on anyone's plan."""

    def allow_request(self, request: Any, view: Any) -> bool:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not request.path.startswith("/api/v1/"):
            return True
        plan = plan_for_user(user)
        groups = ["api_calls"]
        action_group = API_ACTION_LIMITS.get((getattr(view, "basename", None), getattr(view, "action", None)))
        if action_group:
            groups.append(action_group)
        for group in groups:
            try:
                rate_limit_check(request=request, user=user, group=group, plan=plan)
            except RateLimited as exc:
                raise ApiRateLimited(exc) from exc
        return True
