"""Plans and rate limits: the plan's credit rate prices jobs; its limits answer 429 with Retry-After."""

from __future__ import annotations

import io
import types
from typing import Any

import pytest
from django.core.cache import cache
from PIL import Image
from rest_framework.test import APIClient
from rest_framework.views import APIView

import billing.admin.plans  # noqa: F401  (registers its models before the admin's URLs are built, as billing/admin/__init__.py will)
from billing.limits import (
    PlanRateThrottle,
    RateLimited,
    credits_per_usd_for,
    plan_assign,
    plan_for_user,
    rate_limit_check,
)
from billing.models import AccountKind, LedgerAccount, Plan
from generations.models import Generation
from generations.runner import generation_run
from generations.services import generation_create, generation_estimate

pytestmark = pytest.mark.django_db

# A fixed clock for django-ratelimit's windows: a test must not straddle a window's end.
NOW = 1_800_000_000


@pytest.fixture(autouse=True)
def _seeded_plans(db: Any) -> None:
    # Migration 0003 seeds them; on the PostgreSQL leg a transactional test may have flushed them.
    from billing.models import CreditPack
    from billing.seed import seed_defaults

    seed_defaults(Plan, CreditPack)


@pytest.fixture(autouse=True)
def fresh_counters(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.GENERATION_POLL_INTERVAL = 0.01
    cache.clear()
    monkeypatch.setattr("django_ratelimit.core.time", types.SimpleNamespace(time=lambda: NOW))


@pytest.fixture
def throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The throttle as config/settings/base.py's REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] installs it. Views
    read that setting when their class is defined, so the test sets the class attribute they inherit."""
    monkeypatch.setattr(APIView, "throttle_classes", [PlanRateThrottle])


def plan(code: str, **limits: Any) -> Plan:
    return Plan.objects.create(code=code, name=code.title(), **limits)


def png() -> io.BytesIO:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 90)).save(buf, "PNG")
    buf.seek(0)
    buf.name = "a.png"
    return buf


def submit_api(client: APIClient, project: Any, prompt: str = "x") -> Any:
    return client.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                               "inputs": {"prompt": prompt}}, format="json")


# --- plans -------------------------------------------------------------------------------------------------

def test_users_without_an_assignment_are_on_the_default_plan(owner: Any) -> None:
    assert plan_for_user(owner).code == "free"
    pro = Plan.objects.get(code="pro")
    plan_assign(user=owner, plan=pro)
    assert plan_for_user(owner) == pro


def test_with_no_default_plan_the_platform_rate_and_model_defaults_apply(owner: Any, settings: Any) -> None:
    Plan.objects.update(is_default=False)
    settings.CREDITS_PER_USD = 250
    fallback = plan_for_user(owner)
    assert (fallback.credits_per_usd, fallback.generations_per_hour, fallback.uploads_per_day,
            fallback.api_calls_per_minute) == (250, 10, 50, 100)
    assert credits_per_usd_for(user_id=owner.pk) == 250


def test_jobs_are_estimated_held_and_charged_at_the_users_plan_rate(owner: Any, project: Any, catalog: None) -> None:
    inputs = {"prompt": "a kite", "width": 256, "height": 256, "steps": 1}
    assert generation_estimate(user=owner, model_id="local/sketch", inputs=inputs)[2].credits == 1
    plan_assign(user=owner, plan=plan("studio", credits_per_usd=2500))
    assert generation_estimate(user=owner, model_id="local/sketch", inputs=inputs)[2].credits == 25
    generation = generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs=inputs)
    assert generation.credits_held == 25
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.credits_charged == 25


# --- the limit itself --------------------------------------------------------------------------------------

def test_the_limit_refuses_the_attempt_after_the_plans_allowance_and_says_when_to_retry(owner: Any) -> None:
    plan_assign(user=owner, plan=plan("tight", uploads_per_day=2))
    rate_limit_check(user=owner, group="uploads")
    rate_limit_check(user=owner, group="uploads")
    with pytest.raises(RateLimited) as refused:
        rate_limit_check(user=owner, group="uploads")
    exc = refused.value
    assert exc.http_status == 429 and exc.code == "rate_limited"
    assert exc.message.startswith("Rate limit reached: your Tight plan allows 2 uploads per day. Try again in ")
    assert 0 < exc.retry_after <= 86400
    assert exc.extra["limit"] == {"name": "uploads_per_day", "limit": 2, "plan": "tight"}


def test_limits_are_counted_per_user(owner: Any, outsider: Any) -> None:
    Plan.objects.filter(code="free").update(uploads_per_day=1)
    rate_limit_check(user=owner, group="uploads")
    rate_limit_check(user=outsider, group="uploads")
    with pytest.raises(RateLimited):
        rate_limit_check(user=owner, group="uploads")


def test_a_plan_change_takes_effect_at_once_and_keeps_the_count(owner: Any) -> None:
    small, big = plan("small", uploads_per_day=2), plan("big", uploads_per_day=4)
    plan_assign(user=owner, plan=small)
    for _ in range(2):
        rate_limit_check(user=owner, group="uploads")
    with pytest.raises(RateLimited):
        rate_limit_check(user=owner, group="uploads")
    plan_assign(user=owner, plan=big)
    rate_limit_check(user=owner, group="uploads")  # the 4th attempt, within the new allowance of 4
    with pytest.raises(RateLimited, match="Big plan allows 4 uploads per day"):
        rate_limit_check(user=owner, group="uploads")
    Plan.objects.filter(pk=big.pk).update(uploads_per_day=100)  # an admin edit applies the same way
    rate_limit_check(user=owner, group="uploads")


def test_the_ratelimit_switch_turns_every_limit_off(owner: Any, settings: Any) -> None:
    settings.RATELIMIT_ENABLE = False
    Plan.objects.filter(code="free").update(uploads_per_day=0)
    rate_limit_check(user=owner, group="uploads")


def test_web_submits_are_limited_per_hour_and_a_refused_one_holds_nothing(owner: Any, project: Any,
                                                                          catalog: None) -> None:
    plan_assign(user=owner, plan=plan("hourly", generations_per_hour=2))
    for prompt in ("one", "two"):
        generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": prompt},
                          rate_limit=True)
    with pytest.raises(RateLimited, match=r"allows 2 generations per hour\. Try again in \d+ (minute|second)"):
        generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "3"},
                          rate_limit=True)
    assert Generation.objects.count() == 2
    # The CLI (and other callers that do not ask for the limit) are not counted or refused.
    generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "cli"})


def test_a_web_submit_refused_for_the_hourly_limit_is_given_back(owner: Any, project: Any, catalog: None) -> None:
    hourly = plan("hourly", generations_per_hour=1)
    plan_assign(user=owner, plan=hourly)
    generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "1"},
                      rate_limit=True)
    for _ in range(3):
        with pytest.raises(RateLimited):
            generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "2"},
                              rate_limit=True)
    assert Generation.objects.filter(user=owner).count() == 1
    assert LedgerAccount.objects.get(user=owner, kind=AccountKind.WALLET).held == 1  # the refused holds rolled back
    # Had the three refusals counted, the count would be 4 and a limit of 2 would still refuse.
    Plan.objects.filter(pk=hourly.pk).update(generations_per_hour=2)
    generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "3"},
                      rate_limit=True)
    assert Generation.objects.filter(user=owner).count() == 2


# --- fixed windows on every cache backend ----------------------------------------------------------------

class Clock:
    """time.time for django-ratelimit and Django's cache backends, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def _window_end(user: Any, period: int, now: int) -> int:
    from django_ratelimit.core import _get_window

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django_ratelimit.core.time", Clock(now))
        return _get_window(str(user.pk), period)


def _counter_key(user: Any, group: str, period: int, now: int) -> str:
    from django_ratelimit import ALL
    from django_ratelimit.core import _make_cache_key

    return _make_cache_key(f"plan:{group}", _window_end(user, period, now), (0, period), str(user.pk), ALL)


def test_the_hourly_window_holds_its_count_to_the_end_the_429_names_on_the_file_cache(
        owner: Any, settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    from django.core.cache import caches

    settings.CACHES = {**settings.CACHES, "limits": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path)}}
    settings.RATELIMIT_USE_CACHE = "limits"
    plan_assign(user=owner, plan=plan("hourly", generations_per_hour=2))
    # Start one second into the user's window, so the window ends 3599 s later.
    start = _window_end(owner, 3600, NOW) - 3600 + 1
    clock = Clock(start)
    for module in ("django_ratelimit.core", "django.core.cache.backends.base",
                   "django.core.cache.backends.filebased"):
        monkeypatch.setattr(f"{module}.time", clock)
    for _ in range(2):  # the first adds the entry, the second increments it
        rate_limit_check(user=owner, group="generations", count_refused=False)
    # Ten minutes on: the file cache's incr used to rewrite the entry with its 300 s default timeout,
    # so the count was gone and a third job went through inside the hour.
    clock.now = start + 600
    with pytest.raises(RateLimited) as refused:
        rate_limit_check(user=owner, group="generations", count_refused=False)
    window_end = start + 3599
    assert refused.value.retry_after == window_end - clock.now
    key = _counter_key(owner, "generations", 3600, start)
    with open(caches["limits"]._key_to_file(key), "rb") as entry:
        assert pickle.load(entry) == window_end + 5  # django-ratelimit's EXPIRATION_FUDGE
    clock.now = window_end + 1  # a new window, a new count
    rate_limit_check(user=owner, group="generations", count_refused=False)


def test_the_counters_expiry_is_the_windows_end_on_redis(owner: Any, settings: Any) -> None:
    import os

    from django.core.cache import caches

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        pytest.skip("REDIS_URL is not set (the PostgreSQL + Redis leg runs this)")
    settings.CACHES = {**settings.CACHES, "limits": {
        "BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url, "KEY_PREFIX": "test-limits"}}
    settings.RATELIMIT_USE_CACHE = "limits"
    caches["limits"].clear()
    plan_assign(user=owner, plan=plan("hourly", generations_per_hour=5))
    for _ in range(2):
        rate_limit_check(user=owner, group="generations", count_refused=False)
    time_left = _window_end(owner, 3600, NOW) - NOW
    ttl = caches["limits"].ttl(_counter_key(owner, "generations", 3600, NOW))
    assert time_left + 5 - 1 <= ttl <= time_left + 5


# --- the API -----------------------------------------------------------------------------------------------

def test_api_generation_submits_over_the_hourly_limit_get_429_with_retry_after(
        throttled: None, owner: Any, owner_api: APIClient, project: Any, catalog: None) -> None:
    plan_assign(user=owner, plan=plan("hourly", generations_per_hour=2))
    assert [submit_api(owner_api, project, p).status_code for p in ("a", "b")] == [202, 202]
    refused = submit_api(owner_api, project, "c")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert "your Hourly plan allows 2 generations per hour. Try again in" in error["message"]
    assert Generation.objects.count() == 2
    assert owner_api.get("/api/v1/generations").status_code == 200  # other calls still go through


def test_seven_refused_api_submits_do_not_use_up_an_hourly_limit_of_one(
        throttled: None, owner: Any, owner_api: APIClient, project: Any, catalog: None) -> None:
    plan_assign(user=owner, plan=plan("hourly", generations_per_hour=1))
    typos = [
        {"project": str(project.pk), "model": "local/skecth", "inputs": {"prompt": "x"}},
        {"project": str(project.pk), "model": "local/sketch", "inputs": {"prompt": "x", "steps": "many"}},
        {"project": str(project.pk), "model": "local/sketch", "inputs": {}},
        {"project": "00000000-0000-0000-0000-000000000000", "model": "local/sketch", "inputs": {"prompt": "x"}},
        {"project": str(project.pk), "model": "local/sketch"},
        {"model": "local/sketch", "inputs": {"prompt": "x"}},
        {"project": str(project.pk), "model": "local/sketch", "inputs": {"prompt": "x", "width": -5}},
    ]
    codes = [owner_api.post("/api/v1/generations", body, format="json").status_code for body in typos]
    assert all(code in (400, 404) for code in codes), codes
    assert submit_api(owner_api, project).status_code == 202
    refused = submit_api(owner_api, project)
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 3600
    assert Generation.objects.count() == 1


def test_web_and_api_submits_share_one_hourly_count(throttled: None, owner: Any, owner_api: APIClient,
                                                    project: Any, catalog: None) -> None:
    plan_assign(user=owner, plan=plan("hourly", generations_per_hour=2))
    generation_create(user=owner, project_id=project.pk, model_id="local/sketch", inputs={"prompt": "web"},
                      rate_limit=True)
    assert submit_api(owner_api, project).status_code == 202
    assert submit_api(owner_api, project).status_code == 429


def test_api_uploads_over_the_daily_limit_get_429(throttled: None, owner: Any, owner_api: APIClient,
                                                  project: Any) -> None:
    plan_assign(user=owner, plan=plan("uploads", uploads_per_day=1))
    first = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": png()}, format="multipart")
    assert first.status_code == 201, first.content
    second = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": png()}, format="multipart")
    assert second.status_code == 429
    assert "1 uploads per day" in second.json()["error"]["message"] and int(second["Retry-After"]) > 0


def test_api_calls_over_the_per_minute_limit_get_429_for_that_user_only(
        throttled: None, owner: Any, owner_api: APIClient, outsider_api: APIClient) -> None:
    plan_assign(user=owner, plan=plan("chatty", api_calls_per_minute=3))
    assert [owner_api.get("/api/v1/projects").status_code for _ in range(3)] == [200, 200, 200]
    refused = owner_api.get("/api/v1/projects")
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limited"
    assert "3 API calls per minute" in refused.json()["error"]["message"]
    assert outsider_api.get("/api/v1/projects").status_code == 200


def test_upgrading_the_plan_lifts_an_api_limit_on_the_next_call(throttled: None, owner: Any,
                                                                owner_api: APIClient) -> None:
    Plan.objects.filter(code="free").update(api_calls_per_minute=1)
    assert owner_api.get("/api/v1/projects").status_code == 200
    assert owner_api.get("/api/v1/projects").status_code == 429
    plan_assign(user=owner, plan=Plan.objects.get(code="pro"))
    assert owner_api.get("/api/v1/projects").status_code == 200


def test_unauthenticated_requests_are_not_counted(throttled: None) -> None:
    Plan.objects.filter(code="free").update(api_calls_per_minute=0)
    assert APIClient().get("/api/v1/projects").status_code == 401


# --- admin -------------------------------------------------------------------------------------------------

def test_an_admin_edits_a_plans_limits_and_assigns_users_to_plans(client: Any, owner: Any) -> None:
    from django.contrib.auth import get_user_model

    admin_user = get_user_model().objects.create_superuser(email="admin@example.com", password="x" * 12)
    client.force_login(admin_user)
    assert client.get("/admin/billing/plan/").status_code == 200
    free = Plan.objects.get(code="free")
    response = client.post(f"/admin/billing/plan/{free.pk}/change/", {
        "code": "free", "name": "Free", "credits_per_usd": 120, "generations_per_hour": 5, "uploads_per_day": 50,
        "api_calls_per_minute": 100, "referral_bonus_cap": 10, "is_default": "on"})
    assert response.status_code == 302
    assert plan_for_user(owner).generations_per_hour == 5 and credits_per_usd_for(user_id=owner.pk) == 120
    assert client.get("/admin/billing/userplan/add/").status_code == 200
    assert client.get("/admin/billing/notification/").status_code == 200
