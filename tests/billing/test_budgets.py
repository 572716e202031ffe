"""Budgets: checked with the hold, moved by settle and release, reset by period, alerting once each."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import connection, transaction
from django.urls import include, path
from rest_framework.test import APIClient

import billing.admin.plans  # noqa: F401  (registers its models before the admin's URLs are built, as billing/admin/__init__.py will)
import config.urls
from billing.budgets.services import (
    TOTAL_PERIOD_START,
    BudgetExceeded,
    budget_clear,
    budget_hold,
    budget_resize,
    budget_status,
    period_start,
)
from billing.limits import plan_assign
from billing.models import Budget, BudgetAlert, BudgetUsage, Notification, Plan
from billing.services import InsufficientCredits, credits_grant, credits_summary
from generations import attempts, runner
from generations.models import Generation, Status
from generations.runner import generation_run
from generations.services import generation_cancel, generation_create
from orchestration.budgets import budget_set
from studio import urls as studio_urls
from studio.views import budgets as budget_views

# Until the lead includes billing.budgets.urls and the studio budget routes in the real URLconf, these
# tests carry their own: the real one plus those routes (harmless duplicates once it is wired).
urlpatterns = [
    path("api/v1/", include("billing.budgets.urls")),
    path("", include(([
        path("p/<uuid:project_id>/budget", budget_views.project_budget_view, name="project-budget"),
        path("account/budget", budget_views.account_budget_view, name="account-budget"),
        path("notifications/<int:notification_id>/read", budget_views.notification_read_view,
             name="notification-read"),
        path("notifications/read", budget_views.notifications_read_all_view, name="notifications-read-all"),
        *studio_urls.urlpatterns,
    ], "studio"))),
    *[p for p in config.urls.urlpatterns if getattr(p, "namespace", None) != "studio"],
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

JOB = 30  # credits a sketch costs on the test plan below


@pytest.fixture(autouse=True)
def fast_polling(settings: Any) -> None:
    settings.GENERATION_POLL_INTERVAL = 0.01


@pytest.fixture
def priced(owner: Any) -> Plan:
    """A plan that prices the $0.01 sketch at 30 credits, and credits enough that the wallet is never
    what refuses a job here."""
    plan = Plan.objects.create(code="test-3000", name="Test", credits_per_usd=3000)
    plan_assign(user=owner, plan=plan)
    credits_grant(user=owner, amount=10_000, reason="test", idempotency_key=f"test:{owner.pk}")
    return plan


def submit(user: Any, project: Any, prompt: str = "a kite") -> Generation:
    return generation_create(user=user, project_id=project.pk, model_id="local/sketch",
                             inputs={"prompt": prompt, "width": 256, "height": 256, "steps": 1})


def usage_of(budget: Budget) -> tuple[int, int]:
    status = budget_status(budget)
    return status.spent, status.held


# --- refusal ---------------------------------------------------------------------------------------------

def test_a_job_that_would_pass_the_project_budget_is_refused_with_a_message_naming_it(
        owner: Any, owner_api: APIClient, project: Any, catalog: None, priced: Plan) -> None:
    budget = budget_set(project=project, limit_credits=500)
    BudgetUsage.objects.create(budget=budget, period_start=period_start("monthly"), spent=400, held=80)
    before = credits_summary(user=owner)
    with pytest.raises(BudgetExceeded) as refused:
        submit(owner, project)
    assert refused.value.message == ("This would exceed the project “Trailer” monthly budget: "
                                     "480 of 500 credits used, this job needs 30.")
    assert credits_summary(user=owner) == before
    assert not Generation.objects.exists()
    assert usage_of(budget) == (400, 80)

    response = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                                      "inputs": {"prompt": "x"}}, format="json")
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["budget"] == {"id": budget.pk, "scope": "project", "project": str(project.pk), "period": "monthly",
                               "period_start": period_start("monthly").isoformat(), "limit": 500, "spent": 400,
                               "held": 80, "used": 480, "required": 30}


def test_a_job_that_would_pass_the_users_monthly_cap_is_refused_in_any_project(
        owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    from projects.services import project_create

    budget_set(user=owner, limit_credits=50)
    submit(owner, project)
    other = project_create(owner=owner, name="Teaser")
    with pytest.raises(BudgetExceeded, match="This would exceed your monthly budget: 30 of 50 credits used, "
                                             "this job needs 30."):
        submit(owner, other)


def test_a_job_that_fits_exactly_is_accepted_and_the_next_is_refused(owner: Any, project: Any, catalog: None,
                                                                   priced: Plan) -> None:
    budget = budget_set(project=project, limit_credits=60)
    submit(owner, project, "one")
    submit(owner, project, "two")
    assert usage_of(budget) == (0, 60)
    with pytest.raises(BudgetExceeded):
        submit(owner, project, "three")


def test_a_wallet_short_of_credits_is_reported_before_the_budget(owner: Any, project: Any, catalog: None) -> None:
    budget_set(project=project, limit_credits=0)
    plan_assign(user=owner, plan=Plan.objects.create(code="dear", name="Dear", credits_per_usd=100_000))
    with pytest.raises(InsufficientCredits):
        submit(owner, project)


def test_jobs_that_hold_no_credits_neither_count_nor_are_refused(owner: Any, project: Any, catalog: None) -> None:
    plan_assign(user=owner, plan=Plan.objects.create(code="free-ride", name="Free ride", credits_per_usd=0))
    budget = budget_set(project=project, limit_credits=0)
    generation = submit(owner, project)
    assert generation.credits_held == 0 and generation.budget_usage_ids == []
    generation_run(generation.pk)
    assert usage_of(budget) == (0, 0)


# --- settle, release, resize -------------------------------------------------------------------------------

def test_settling_moves_the_jobs_held_credits_to_spent_in_every_budget_it_counted_in(
        owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    mine = budget_set(user=owner, limit_credits=1000)
    projects = budget_set(project=project, limit_credits=1000, period="total")
    generation = submit(owner, project)
    assert usage_of(mine) == (0, JOB) and usage_of(projects) == (0, JOB)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED and generation.credits_charged == JOB
    assert usage_of(mine) == (JOB, 0) and usage_of(projects) == (JOB, 0)


def test_a_partial_charge_counts_what_was_charged_and_frees_the_rest(owner: Any, project: Any, catalog: None,
                                                                     priced: Plan) -> None:
    from billing.hooks import budget_settle

    budget = budget_set(project=project, limit_credits=1000)
    generation = submit(owner, project)
    with transaction.atomic():
        budget_settle(generation=generation, charged=12)
    assert usage_of(budget) == (12, 0)


def test_a_failed_job_frees_its_share_of_the_budget(owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    budget = budget_set(project=project, limit_credits=1000)
    generation = submit(owner, project)
    Generation.objects.filter(pk=generation.pk).update(status=Status.RUNNING)
    attempts.generation_fail(generation_id=generation.pk, code="internal_error", message="boom")
    assert usage_of(budget) == (0, 0)


def test_canceling_a_queued_job_frees_its_share_of_the_budget(owner: Any, project: Any, catalog: None,
                                                              priced: Plan) -> None:
    budget = budget_set(user=owner, limit_credits=1000)
    generation = submit(owner, project)
    generation_cancel(user=owner, generation_id=generation.pk)
    assert usage_of(budget) == (0, 0)


def test_a_fallback_that_needs_more_than_the_budget_allows_is_refused_and_a_cheaper_one_shrinks_the_share(
        owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    budget = budget_set(project=project, limit_credits=50)
    generation = submit(owner, project)
    with pytest.raises(BudgetExceeded), transaction.atomic():
        budget_resize(generation=generation, credits=60)
    assert usage_of(budget) == (0, JOB)
    with transaction.atomic():
        assert budget_resize(generation=generation, credits=10) == generation.budget_usage_ids
        Generation.objects.filter(pk=generation.pk).update(credits_held=10)
    assert usage_of(budget) == (0, 10)


def test_a_job_moved_to_a_fallback_moves_its_budget_share_or_skips_a_fallback_the_budget_cannot_cover(
        owner: Any, project: Any, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    from generations.providers.base import Output, ProviderError, ProviderStatus
    from tests.generations.test_health_and_fallbacks import make_model
    from tests.generations.test_pipeline import ScriptedProvider, png

    cache.clear()  # the circuit breaker's counts
    settings.GENERATION_MAX_ATTEMPTS = 1
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "alpha": "key-a", "beta": "key-b", "gamma": "key-c"}
    make_model("alpha/img", "alpha", "0.05")  # 5 credits
    make_model("beta/img", "beta", "0.09")  # 9: more than the budget leaves
    make_model("gamma/img", "gamma", "0.03")  # 3
    ok = ProviderStatus(state="succeeded", outputs=[Output(kind="image", mime="image/png", data=png())])
    scripted = {"alpha": ScriptedProvider([ProviderError("overloaded", code="overloaded", retryable=True)]),
                "beta": ScriptedProvider([ok]), "gamma": ScriptedProvider([ok])}
    for name, provider in scripted.items():
        provider.name = name
    monkeypatch.setattr(runner, "get_provider", lambda name: scripted[name])
    budget = budget_set(project=project, limit_credits=8)

    generation = generation_create(user=owner, project_id=project.pk, model_id="alpha/img",
                                   inputs={"prompt": "a kite"}, fallback_models=["beta/img", "gamma/img"])
    assert usage_of(budget) == (0, 5)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.model_id, generation.credits_held) == ("gamma/img", 3)
    assert "Fallback beta/img skipped: This would exceed the project “Trailer” monthly budget" in " ".join(
        line["message"] for line in generation.logs)
    assert usage_of(budget) == (0, 3) and credits_summary(user=owner).held == 3
    generation_run(generation.pk)
    assert usage_of(budget) == (3, 0)


def test_a_budget_removed_while_a_job_runs_leaves_the_job_to_finish_normally(
        owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    budget_set(project=project, limit_credits=1000)
    generation = submit(owner, project)
    assert budget_clear(project=project)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED
    assert not BudgetUsage.objects.exists()


def test_a_budget_created_while_a_job_runs_counts_its_hold_and_then_its_charge(
        owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    early = submit(owner, project, "early")
    budget = budget_set(project=project, limit_credits=1000)
    assert usage_of(budget) == (0, JOB)
    generation_run(early.pk)
    assert usage_of(budget) == (JOB, 0)
    submit(owner, project, "late")
    assert usage_of(budget) == (JOB, JOB)


def test_a_budget_created_while_a_job_is_queued_frees_its_hold_when_it_is_canceled(
        owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    queued = submit(owner, project)
    budget = budget_set(user=owner, limit_credits=1000)
    assert usage_of(budget) == (0, JOB)
    generation_cancel(user=owner, generation_id=queued.pk)
    assert usage_of(budget) == (0, 0)


# --- what was used before the budget was set ---------------------------------------------------------------

def spend(owner: Any, project: Any, jobs: int) -> None:
    for n in range(jobs):
        generation_run(submit(owner, project, f"job {n}").pk)


def test_a_total_budget_set_after_a_project_spent_shows_that_spend(owner: Any, project: Any, catalog: None,
                                                                   priced: Plan, owner_api: APIClient) -> None:
    spend(owner, project, 2)
    put = owner_api.put(f"/api/v1/projects/{project.pk}/budget", {"limit": 100, "period": "total"}, format="json")
    assert put.status_code == 200, put.content
    assert (put.json()["spent"], put.json()["held"], put.json()["remaining"]) == (2 * JOB, 0, 100 - 2 * JOB)
    submit(owner, project)  # 90 of 100
    with pytest.raises(BudgetExceeded, match="90 of 100 credits used"):
        submit(owner, project)


def test_a_monthly_cap_set_mid_month_counts_the_months_earlier_spend_but_not_last_months(
        owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    from billing.models import UsageDaily

    spend(owner, project, 1)
    last_month = period_start("monthly") - timedelta(days=1)
    UsageDaily.objects.create(day=last_month, user=owner, project=project, model="local/sketch",
                              provider="local", generations=9, succeeded=9, credits=9 * JOB)
    budget = budget_set(user=owner, limit_credits=2 * JOB)
    assert usage_of(budget) == (JOB, 0)
    submit(owner, project)
    with pytest.raises(BudgetExceeded):
        submit(owner, project)


def test_clearing_a_budget_and_setting_it_again_keeps_the_count(owner: Any, project: Any, catalog: None,
                                                                priced: Plan) -> None:
    budget_set(project=project, limit_credits=100)
    spend(owner, project, 1)
    running = submit(owner, project)
    assert budget_clear(project=project)
    budget = budget_set(project=project, limit_credits=100)
    assert usage_of(budget) == (JOB, JOB)
    generation_run(running.pk)
    assert usage_of(budget) == (2 * JOB, 0)
    # Changing only the limit keeps the period's usage as it is (nothing counted twice).
    assert usage_of(budget_set(project=project, limit_credits=200)) == (2 * JOB, 0)


def test_switching_a_budget_total_monthly_and_back_counts_the_spend_and_running_holds_once(
        owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    spend(owner, project, 1)
    running = submit(owner, project)
    total = budget_set(project=project, limit_credits=1000, period="total")
    assert usage_of(total) == (JOB, JOB)
    assert usage_of(budget_set(project=project, limit_credits=1000, period="monthly")) == (JOB, JOB)
    # Back to total: its row from before is counted afresh, not added to.
    total = budget_set(project=project, limit_credits=1000, period="total")
    assert usage_of(total) == (JOB, JOB)
    running.refresh_from_db()
    assert len(running.budget_usage_ids) == len(set(running.budget_usage_ids))
    generation_run(running.pk)
    assert usage_of(total) == (2 * JOB, 0)


def test_a_budget_limit_over_the_columns_range_is_a_400_naming_the_limit(owner_api: APIClient, project: Any) -> None:
    from core.errors import InvalidRequest

    for url in (f"/api/v1/projects/{project.pk}/budget", "/api/v1/me/budget"):
        refused = owner_api.put(url, {"limit": 2_147_483_648}, format="json")
        assert refused.status_code == 400, refused.content
        assert refused.json()["error"]["fields"]["limit"]
    assert owner_api.put(f"/api/v1/projects/{project.pk}/budget", {"limit": 2_147_483_647},
                         format="json").status_code == 200
    with pytest.raises(InvalidRequest, match="at most 2147483647"):
        budget_set(project=project, limit_credits=2_147_483_648)
    assert Budget.objects.get().limit_credits == 2_147_483_647


# --- periods ---------------------------------------------------------------------------------------------

def test_a_monthly_budget_starts_afresh_each_month(owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    budget = budget_set(project=project, limit_credits=100)
    this_month = period_start("monthly")
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    BudgetUsage.objects.create(budget=budget, period_start=last_month, spent=100)
    generation = submit(owner, project)
    assert BudgetUsage.objects.get(pk=generation.budget_usage_ids[0]).period_start == this_month
    assert usage_of(budget) == (0, JOB)


def test_a_job_is_counted_in_the_month_it_was_submitted_even_if_it_ends_in_the_next(
        owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    budget = budget_set(project=project, limit_credits=1000)
    generation = submit(owner, project)
    submitted = BudgetUsage.objects.get(pk=generation.budget_usage_ids[0])
    # The month turns: the job's row is moved back a month, as if submitted then.
    BudgetUsage.objects.filter(pk=submitted.pk).update(period_start=date(2001, 5, 1))
    generation_run(generation.pk)
    submitted.refresh_from_db()
    assert (submitted.spent, submitted.held) == (JOB, 0)
    assert usage_of(budget) == (0, 0)


def test_a_total_budget_never_resets(owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    budget = budget_set(project=project, limit_credits=100, period="total")
    BudgetUsage.objects.create(budget=budget, period_start=TOTAL_PERIOD_START, spent=90)
    with pytest.raises(BudgetExceeded, match="the project “Trailer” total budget: 90 of 100"):
        submit(owner, project)


def test_a_users_budget_cannot_be_a_total(owner: Any) -> None:
    from core.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        budget_set(user=owner, limit_credits=10, period="total")


# --- alerts ----------------------------------------------------------------------------------------------

def test_alerts_come_at_50_80_and_100_percent_once_each_per_period(
        owner: Any, project: Any, catalog: None, priced: Plan, django_capture_on_commit_callbacks: Any) -> None:
    budget = budget_set(project=project, limit_credits=90)
    jobs = []
    with django_capture_on_commit_callbacks(execute=True):
        jobs.append(submit(owner, project, "one"))  # 30 of 90: no alert
        assert not Notification.objects.exists()
        jobs.append(submit(owner, project, "two"))  # 60 of 90: 50 %
        jobs.append(submit(owner, project, "three"))  # 90 of 90: 80 % and 100 % at once, one message
        generation_cancel(user=owner, generation_id=jobs[-1].pk)
        jobs.append(submit(owner, project, "again"))  # back to 90 of 90: nothing new
    assert sorted(BudgetAlert.objects.filter(budget=budget).values_list("threshold", flat=True)) == [50, 80, 100]
    messages = list(Notification.objects.filter(user=owner).order_by("created_at").values_list("kind", "message"))
    this_month = period_start("monthly")
    assert messages == [
        ("budget_50", f"The project “Trailer” monthly budget is 50% used for {this_month:%B %Y}: "
                      "60 of 90 credits spent or on hold."),
        ("budget_100", f"The project “Trailer” monthly budget is fully used for {this_month:%B %Y}: "
                       "90 of 90 credits spent or on hold. New jobs that need credits are refused until next "
                       "month or the limit is raised."),
    ]
    assert [m.subject for m in mail.outbox] == ["Budget alert: project “Trailer” at 50%",
                                                "Budget alert: project “Trailer” at 100%"]
    assert mail.outbox[1].to == [owner.email]
    assert f"/p/{project.pk}/" in mail.outbox[1].body


def test_alerts_start_over_in_a_new_month(owner: Any, project: Any, catalog: None, priced: Plan) -> None:
    budget = budget_set(project=project, limit_credits=60)
    BudgetAlert.objects.create(budget=budget, period_start=date(2001, 5, 1), threshold=50)
    submit(owner, project)
    assert BudgetAlert.objects.filter(budget=budget, period_start=period_start("monthly"), threshold=50).exists()


def test_a_refused_job_sends_no_alert_and_no_email(owner: Any, project: Any, catalog: None, priced: Plan,
                                                   django_capture_on_commit_callbacks: Any) -> None:
    budget_set(project=project, limit_credits=20)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(BudgetExceeded):
        submit(owner, project)
    assert not Notification.objects.exists() and not BudgetAlert.objects.exists() and mail.outbox == []


def test_the_user_budget_alert_goes_to_the_user_with_a_link_to_the_account_page(
        owner: Any, project: Any, catalog: None, priced: Plan, django_capture_on_commit_callbacks: Any) -> None:
    budget_set(user=owner, limit_credits=30)
    with django_capture_on_commit_callbacks(execute=True):
        submit(owner, project)
    notification = Notification.objects.get(user=owner)
    assert notification.message.startswith("Your monthly budget is fully used")
    assert mail.outbox[0].subject == "Budget alert: your monthly budget at 100%"
    assert "/account/" in mail.outbox[0].body


# --- API ---------------------------------------------------------------------------------------------------

def test_the_project_budget_api_sets_shows_and_removes_a_budget(owner_api: APIClient, owner: Any, project: Any,
                                                                catalog: None, priced: Plan) -> None:
    url = f"/api/v1/projects/{project.pk}/budget"
    missing = owner_api.get(url)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_budget"
    put = owner_api.put(url, {"limit": 500, "period": "total"}, format="json")
    assert put.status_code == 200, put.content
    submit(owner, project)
    shown = owner_api.get(url).json()
    assert {k: shown[k] for k in ("scope", "period", "limit", "spent", "held", "used", "remaining", "percent")} == {
        "scope": "project", "period": "total", "limit": 500, "spent": 0, "held": 30, "used": 30,
        "remaining": 470, "percent": 6}
    assert owner_api.put(url, {"limit": -1}, format="json").status_code == 400
    assert owner_api.delete(url).status_code == 204
    assert not Budget.objects.exists()


def test_another_users_project_budget_is_not_found(outsider_api: APIClient, project: Any) -> None:
    budget_set(project=project, limit_credits=500)
    url = f"/api/v1/projects/{project.pk}/budget"
    assert outsider_api.get(url).status_code == 404
    assert outsider_api.put(url, {"limit": 1}, format="json").status_code == 404
    assert outsider_api.delete(url).status_code == 404
    assert Budget.objects.get().limit_credits == 500


def test_my_budget_api_is_a_monthly_cap(owner_api: APIClient, owner: Any) -> None:
    assert owner_api.put("/api/v1/me/budget", {"limit": 300}, format="json").json()["period"] == "monthly"
    refused = owner_api.put("/api/v1/me/budget", {"limit": 300, "period": "total"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["fields"]["period"]
    assert owner_api.get("/api/v1/me/budget").json()["limit"] == 300


def test_notifications_are_listed_newest_first_and_marked_read_by_their_owner_only(
        owner: Any, outsider: Any, owner_api: APIClient, outsider_api: APIClient) -> None:
    first = Notification.objects.create(user=owner, kind="budget_50", message="half")
    Notification.objects.create(user=owner, kind="budget_80", message="most")
    Notification.objects.create(user=outsider, kind="budget_50", message="theirs")
    listed = owner_api.get("/api/v1/notifications").json()["results"]
    assert [n["message"] for n in listed] == ["most", "half"]
    assert outsider_api.post(f"/api/v1/notifications/{first.pk}/read").status_code == 404
    read = owner_api.post(f"/api/v1/notifications/{first.pk}/read")
    assert read.status_code == 200 and read.json()["read"] is True
    unread = owner_api.get("/api/v1/notifications", {"unread": "true"}).json()["results"]
    assert [n["message"] for n in unread] == ["most"]


# --- web ---------------------------------------------------------------------------------------------------

def test_the_budget_card_sets_and_removes_a_project_budget(client: Any, owner: Any, project: Any) -> None:
    client.force_login(owner)
    url = f"/p/{project.pk}/budget"
    response = client.post(url, {"limit": "250", "period": "monthly"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Budget set: 250 credits a month." in html and "0</strong> of 250 credits used" in html
    assert Budget.objects.get(project=project).limit_credits == 250
    response = client.post(url, {"action": "clear"})
    assert response.status_code == 302 and response["Location"] == f"/p/{project.pk}/#budget"
    assert not Budget.objects.exists()


def test_the_budget_card_shows_a_full_budget_and_rejects_a_bad_limit(client: Any, owner: Any, project: Any) -> None:
    budget = budget_set(user=owner, limit_credits=100)
    BudgetUsage.objects.create(budget=budget, period_start=period_start("monthly"), spent=70, held=30)
    client.force_login(owner)
    response = client.post("/account/budget", {"limit": "lots"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "Enter a whole number of credits" in html
    assert "The budget is used up" in html and 'aria-valuenow="100"' in html


def test_another_users_project_budget_cannot_be_set_from_the_web(client: Any, outsider: Any, project: Any) -> None:
    client.force_login(outsider)
    assert client.post(f"/p/{project.pk}/budget", {"limit": "1"}).status_code == 404
    assert not Budget.objects.exists()


def test_the_notifications_list_marks_one_read(client: Any, owner: Any) -> None:
    note = Notification.objects.create(user=owner, kind="budget_50", message="Half way")
    client.force_login(owner)
    response = client.post(f"/notifications/{note.pk}/read", HTTP_HX_REQUEST="true")
    assert "Half way" in response.content.decode() and "Mark read" not in response.content.decode()
    note.refresh_from_db()
    assert note.read_at is not None


def test_the_card_context_costs_a_fixed_number_of_queries(owner: Any, project: Any,
                                                          django_assert_num_queries: Any) -> None:
    budget_set(project=project, limit_credits=100)
    with django_assert_num_queries(3):  # budget, usage, alerts
        ctx = budget_views.budget_card_context(owner, project=project)
    assert ctx["budget_card"]["status"].limit == 100


# --- concurrency (PostgreSQL) ---------------------------------------------------------------------------

# PostgreSQL's default max_connections is 100: the threads below are released together, but at most
# this many hold a connection at once.
CONNECTIONS = 40


def _race(n: int, attempt: Any) -> tuple[int, int]:
    barrier = threading.Barrier(n)
    gate = threading.BoundedSemaphore(CONNECTIONS)
    results: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        with gate:
            try:
                attempt()
                outcome = "accepted"
            except BudgetExceeded:
                outcome = "refused"
            except Exception as exc:  # reported in the assertion, not swallowed
                outcome = f"error: {exc!r}"
            finally:
                connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not [r for r in results if r.startswith("error")], results
    return results.count("accepted"), results.count("refused")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_hundred_concurrent_submits_against_a_budget_covering_fifty_accept_exactly_fifty(catalog: None) -> None:
    from billing.signup import user_create
    from projects.services import project_create

    user = user_create(email="crowd@example.com", password="x" * 12, starter_credits=500)
    project = project_create(owner=user, name="Crowd")
    budget = budget_set(project=project, limit_credits=50)  # a sketch is 1 credit at the default rate

    assert _race(100, lambda: submit(user, project)) == (50, 50)
    assert usage_of(budget) == (0, 50)
    assert Generation.objects.filter(project=project).count() == 50
    assert credits_summary(user=user).held == 50


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_budget_lock_alone_stops_concurrent_holds_from_overshooting(catalog: None) -> None:
    """Without the wallet lock in front (future collaborators pay from their own wallets): budget_hold
    from many transactions at once against one project budget."""
    from billing.signup import user_create
    from projects.services import project_create

    user = user_create(email="team@example.com", password="x" * 12, starter_credits=0)
    project = project_create(owner=user, name="Team")
    budget = budget_set(project=project, limit_credits=50)

    def hold() -> None:
        with transaction.atomic():
            budget_hold(generation=Generation(user_id=user.pk, project=project), credits=1)

    assert _race(100, hold) == (50, 50)
    assert usage_of(budget) == (0, 50)
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [50, 80, 100]
    assert Notification.objects.filter(user=user).count() == 3


def test_the_admin_shows_budgets_with_their_usage_and_alerts_read_only(client: Any, owner: Any, project: Any) -> None:
    from django.contrib.auth import get_user_model

    budget = budget_set(project=project, limit_credits=100)
    BudgetUsage.objects.create(budget=budget, period_start=period_start("monthly"), spent=40, held=10)
    alert = BudgetAlert.objects.create(budget=budget, period_start=period_start("monthly"), threshold=50)
    admin_user = get_user_model().objects.create_superuser(email="admin@example.com", password="x" * 12)
    client.force_login(admin_user)
    assert client.get("/admin/billing/budget/").status_code == 200
    page = client.get(f"/admin/billing/budget/{budget.pk}/change/").content.decode()
    assert "40 + 10 / 100 (50%)" in page
    assert client.get("/admin/billing/budgetalert/").status_code == 200
    assert client.post(f"/admin/billing/budgetalert/{alert.pk}/delete/", {"post": "yes"}).status_code == 403


def test_the_openapi_schema_names_the_budget_limit_limit_with_the_columns_range() -> None:
    schema = APIClient().get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    body = schema.json()["components"]["schemas"]["BudgetWriteRequest"]
    assert "limit_credits" not in body["properties"]
    assert body["properties"]["limit"]["minimum"] == 0
    assert body["properties"]["limit"]["maximum"] == 2_147_483_647
    assert body["required"] == ["limit"]
