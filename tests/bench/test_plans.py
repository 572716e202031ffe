"""The benchmarks' own user is on a plan no benchmark can exhaust (bench/plans.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from bench.plans import UNREACHABLE, bench_plan_assign
from billing.limits import RateLimited, plan_for_user, rate_limit_check
from billing.models import Plan, UserPlan


def test_a_new_user_is_refused_the_eleventh_generation_in_an_hour_on_the_free_plan(owner: Any) -> None:
    """The failure `make bench` hit: the seeded default plan allows 10 generations an hour."""
    for _ in range(10):
        rate_limit_check(user=owner, group="generations")
    with pytest.raises(RateLimited, match="10 generations per hour"):
        rate_limit_check(user=owner, group="generations")


def test_the_bench_users_plan_lets_it_submit_more_than_the_free_plans_ten_jobs_an_hour(owner: Any) -> None:
    bench_plan_assign(user=owner)

    for _ in range(11):  # the 11th was the 429 that stopped `make bench`
        rate_limit_check(user=owner, group="generations")
    plan = plan_for_user(owner)
    assert plan.code == "bench-unlimited"
    assert (plan.generations_per_hour, plan.uploads_per_day, plan.api_calls_per_minute) == (UNREACHABLE,) * 3
    assert plan.storage_quota_mb is None  # Plan's "unlimited"
    # Jobs are priced at the platform's rate, so bench/run.py's ledger check (one credit a job) holds.
    assert plan.credits_per_usd == settings.CREDITS_PER_USD


def test_assigning_the_bench_plan_twice_reuses_one_plan_row(owner: Any, outsider: Any) -> None:
    first = bench_plan_assign(user=owner)
    second = bench_plan_assign(user=outsider)

    assert first.pk == second.pk
    assert Plan.objects.filter(code="bench-unlimited").count() == 1
    assert set(UserPlan.objects.filter(plan=first).values_list("user_id", flat=True)) == {owner.pk, outsider.pk}
