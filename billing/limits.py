"""Plans and rate limits.

A user's plan is their `UserPlan`, else the default plan. It gives the credit rate used to price their
jobs and three limits, counted with django-ratelimit's fixed-window counters on the shared cache
(Redis in production, so every web process and worker sees one count; the file cache in development):

- generations per hour: only accepted submits count. API and web submits both go through
  `generation_create(..., rate_limit=True)`, which counts the job in the same transaction as its
  hold, after every check that can refuse it (unknown model, bad inputs, a project you cannot write
  to, credits, budgets): a typo is a 400 and costs nothing, and a submit refused with 429 is given
  back too. Hammering is held off by the per-minute API limit, which counts every call. Both paths
  count in the same window. (The cache is not the database: were the commit itself to fail after
  the count, that one submit would stay counted.) The `generate` management command is not limited: it runs on the
  server, by someone with a shell there.
- uploads per day: API uploads through `PlanRateThrottle`; web uploads call `rate_limit_check` once
  per file.
- API calls per minute: every authenticated /api/v1 request, through `PlanRateThrottle`.

Uploads and API calls count every attempt, refused ones included (django-ratelimit's model: a client
hammering a closed door keeps it closed). A plan's limit is compared with the count at each call
rather than baked into the counter's cache key, so a plan change takes effect on the next request and
keeps the count so far.

Windows are fixed: django-ratelimit puts the window's end in the counter's key, so a new window is a
new counter, and the 429 says when that is. The counter's cache entry expires at that end on every
backend (`_Counter.keep_expiry`): Django's generic `incr` (the file and database caches) rewrites an entry
with the cache's default timeout (300 s), which would forget an hourly count five minutes after the
last submit, long before the time the 429 promised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_ratelimit import ALL
from django_ratelimit import core as ratelimit_core
from django_ratelimit.core import get_usage
from rest_framework import exceptions, status
from rest_framework.exceptions import ErrorDetail
from rest_framework.throttling import BaseThrottle

from billing.models import Plan, UserPlan
from core.errors import ServiceError

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User


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
# Generation submits are not here: they count only once accepted, in generation_create.
# (view basename, action): the group counted besides api_calls; views without either look up None.
API_ACTION_LIMITS: dict[tuple[str | None, str | None], str] = {
    ("asset", "create"): "uploads",
}


# --- plans -------------------------------------------------------------------------------------------

def plan_for_user(user: User | AnonymousUser) -> Plan:
    """The user's assigned plan, else the default one, in one query. With no default plan configured
    the model's defaults apply (an unsaved Plan), at the platform's credit rate."""
    user_id = getattr(user, "pk", None)
    if user_id is not None:
        assigned = Q(pk__in=UserPlan.objects.filter(user_id=user_id).values("plan_id"))
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
def plan_assign(*, user: User, plan: Plan) -> UserPlan:
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


def rate_limit_check(*, request: Any = None, user: User, group: str, rate: RateSpec | None = None,
                     plan: Plan | None = None, count_refused: bool = True) -> None:
    """Count one `group` action by `user` and raise RateLimited if that goes over the limit.

    `rate` is "N/period" or django-ratelimit's callable `(group, request) -> rate`; by default the
    user's plan gives it. The counter's cache key holds the group, the period and the user, not the
    limit, so the same count is compared with whatever the plan says now. With `count_refused=False`
    a refused action is given back, so only allowed ones count (generation submits, called once the
    job is otherwise accepted: concurrent submits at the limit still cannot both pass, as each sees
    the other's count)."""
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
    counter = _Counter(user=user, group=group, period=period)
    counter.keep_expiry(count=usage["count"], time_left=usage["time_left"])
    if usage["count"] > limit:
        if not count_refused:
            counter.give_back(time_left=usage["time_left"])
        raise RateLimited(plan=plan, group=group, limit=limit, retry_after=usage["time_left"])


@dataclass(frozen=True)
class _Counter:
    """The cache entry behind one of get_usage's counters, for what get_usage does not do: keep its
    expiry at the window's end, and give a count back."""

    user: User
    group: str
    period: int

    @property
    def cache(self) -> BaseCache:
        return caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]

    @property
    def key(self) -> str:
        # The key get_usage built: django-ratelimit's own helpers, with the same arguments.
        value = str(self.user.pk)
        window = ratelimit_core._get_window(value, self.period)
        return ratelimit_core._make_cache_key(f"plan:{self.group}", window, (0, self.period), value, ALL)

    def _rewrites_expiry(self) -> bool:
        # Django's generic incr is get + set with the default timeout; backends with a native
        # increment (Redis, memcached, local memory) keep the entry's expiry.
        return type(self.cache).incr is BaseCache.incr

    def keep_expiry(self, *, count: int, time_left: int) -> None:
        """Expire the entry when its window ends (plus django-ratelimit's fudge): after the first
        count, which get_usage added with a whole period's timeout, and after every count on a
        backend whose incr rewrote the expiry."""
        if count <= 1 or self._rewrites_expiry():
            self.cache.touch(self.key, max(time_left, 0) + ratelimit_core.EXPIRATION_FUDGE)

    def give_back(self, *, time_left: int) -> None:
        try:
            self.cache.decr(self.key)
        except ValueError:  # the window ended meanwhile: nothing left to give back
            return
        if self._rewrites_expiry():
            self.cache.touch(self.key, max(time_left, 0) + ratelimit_core.EXPIRATION_FUDGE)


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
