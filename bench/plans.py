"""The plan every benchmark's own user is on: no limit a benchmark can reach.

A new user is on the default plan (Free: 10 generations an hour, 100 API calls a minute, 2 GB of
storage), and a benchmark makes hundreds of each in a minute; `make bench` stopped at the 11th job with
a 429. Plan has no "unlimited" value for its rate limits (the count is compared with the number, and 0
allows nothing), so each limit is the column's largest value: 2,147,483,647 per window is out of reach.
The storage quota is empty, which Plan documents as unlimited. Credits are priced at the platform's
rate, so the ledger checks of bench/run.py (one credit per USD 0.01 job) hold.

The plan row is configuration, as an operator would add it in the admin; the user is put on it through
the billing service (`plan_assign`), the same path the admin and the API take.
"""

from __future__ import annotations

from typing import Any

BENCH_PLAN_CODE = "bench-unlimited"
UNREACHABLE = 2**31 - 1  # the largest value a PositiveIntegerField holds on every backend (PostgreSQL's int4)


def bench_plan_assign(*, user: Any) -> Any:
    """Put `user` on the bench's unlimited plan (created on first use); return the plan."""
    from django.conf import settings

    from billing.limits import plan_assign
    from billing.models import Plan

    plan, _ = Plan.objects.get_or_create(code=BENCH_PLAN_CODE, defaults={
        "name": "Bench (unlimited)", "credits_per_usd": settings.CREDITS_PER_USD,
        "generations_per_hour": UNREACHABLE, "uploads_per_day": UNREACHABLE,
        "api_calls_per_minute": UNREACHABLE,
        "storage_quota_mb": None,
    })
    plan_assign(user=user, plan=plan)
    return plan
