"""Usage reports (selectors, API, CSV, the web page), the project's running cost and the admin's revenue
page. They read the daily rollup only; the rows are made here directly (tests/billing/test_usage_rollup.py
covers how finished generations increment them)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from billing.models import AccountKind, UsageDaily
from billing.services import _lock_wallet, _post, credits_hold, hold_settle, system_account
from billing.usage.services import UsageQuery, project_cost_total, revenue_by_period, usage_rows, usage_totals
from projects.services import project_create

pytestmark = pytest.mark.django_db

TODAY = dt.date(2025, 3, 14)


def _use(user: Any, project: Any, day: dt.date, model: str = "local/sketch", *, ok: int = 1, failed: int = 0,
         credits: int = 10, cost: str = "0.05") -> UsageDaily:
    provider = model.split("/")[0]
    return UsageDaily.objects.create(day=day, user=user, project=project, model=model, provider=provider,
                                     generations=ok + failed, succeeded=ok, failed=failed, credits=credits,
                                     provider_cost_usd=Decimal(cost))


@pytest.fixture
def history(owner: Any, project: Any, outsider: Any) -> dict[str, Any]:
    other = project_create(owner=owner, name="Teaser")
    _use(owner, project, TODAY, "fal/flux", ok=3, failed=1, credits=40, cost="0.40")
    _use(owner, project, TODAY, "local/sketch", ok=2, credits=2, cost="0")
    _use(owner, other, TODAY - dt.timedelta(days=2), "openai/gpt-image", ok=1, credits=25, cost="0.20")
    _use(owner, project, dt.date(2025, 2, 20), "fal/flux", ok=1, failed=1, credits=10, cost="0.10")
    _use(outsider, project_create(owner=outsider, name="Theirs"), TODAY, "fal/flux", ok=9, credits=900, cost="9")
    return {"project": project, "other": other}


def _query(group_by: str, start: dt.date = TODAY - dt.timedelta(days=6), end: dt.date = TODAY,
           project: Any = None) -> UsageQuery:
    return UsageQuery(group_by=group_by, date_from=start, date_to=end, project=project)


# --- selectors ---------------------------------------------------------------------------------------------

def test_usage_by_day_lists_every_day_of_the_range_with_quiet_days_as_zero(owner: Any, history: Any) -> None:
    rows = usage_rows(user=owner, query=_query("day"))
    assert [row.key for row in rows] == [(TODAY - dt.timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    by_day = {row.key: (row.generations, row.credits, row.provider_cost_usd) for row in rows}
    assert by_day["2025-03-14"] == (6, 42, Decimal("0.400000"))
    assert by_day["2025-03-12"] == (1, 25, Decimal("0.200000"))
    assert by_day["2025-03-13"] == (0, 0, Decimal("0"))


def test_usage_by_month_adds_up_the_days_of_each_month(owner: Any, history: Any) -> None:
    rows = usage_rows(user=owner, query=_query("month", start=dt.date(2025, 1, 5)))
    assert [(row.key, row.generations, row.credits) for row in rows] == [
        ("2025-01", 0, 0), ("2025-02", 2, 10), ("2025-03", 7, 67)]


def test_usage_by_model_comes_largest_spend_first_with_its_success_rate(owner: Any, history: Any) -> None:
    rows = usage_rows(user=owner, query=_query("model", start=dt.date(2025, 2, 1)))
    assert [(row.key, row.generations, row.credits) for row in rows] == [
        ("fal/flux", 6, 50), ("openai/gpt-image", 1, 25), ("local/sketch", 2, 2)]
    assert rows[0].success_rate == pytest.approx(4 / 6)


def test_usage_by_provider_and_by_project_group_the_same_rows_other_ways(owner: Any, history: Any) -> None:
    providers = usage_rows(user=owner, query=_query("provider"))
    assert [(row.key, row.credits) for row in providers] == [("fal", 40), ("openai", 25), ("local", 2)]
    projects = usage_rows(user=owner, query=_query("project"))
    assert [(row.label, row.credits) for row in projects] == [("Trailer", 42), ("Teaser", 25)]
    assert projects[0].key == str(history["project"].pk)


def test_a_project_filter_narrows_the_report_to_that_project(owner: Any, history: Any) -> None:
    totals = usage_totals(user=owner, query=_query("day", project=history["other"]))
    assert (totals.generations, totals.credits) == (1, 25)


def test_another_users_usage_never_counts_towards_yours(owner: Any, outsider: Any, history: Any) -> None:
    assert usage_totals(user=owner, query=_query("day")).credits == 67
    assert usage_totals(user=outsider, query=_query("day")).credits == 900


def test_the_project_running_cost_is_one_query_over_the_rollup(owner: Any, history: Any,
                                                                django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1):
        cost = project_cost_total(history["project"])
    assert (cost.generations, cost.credits, cost.provider_cost_usd) == (8, 52, Decimal("0.500000"))
    assert project_cost_total(project_create(owner=owner, name="Empty")).credits == 0


# --- API ---------------------------------------------------------------------------------------------------

def _no_generation_scans(ctx: CaptureQueriesContext) -> None:
    assert not [q["sql"] for q in ctx.captured_queries if "generations_generation" in q["sql"]]


def test_the_usage_api_reports_rows_and_totals(owner_api: Any, history: Any) -> None:
    response = owner_api.get("/api/v1/usage", {"group_by": "model", "from": "2025-03-01", "to": "2025-03-14"})
    assert response.status_code == 200
    body = response.json()
    assert (body["group_by"], body["from"], body["to"], body["project"]) == ("model", "2025-03-01", "2025-03-14", None)
    assert body["totals"]["credits"] == 67
    assert body["results"][0] == {"key": "fal/flux", "label": "fal/flux", "generations": 4, "succeeded": 3,
                                  "failed": 1, "success_rate": 0.75, "credits": 40, "provider_cost_usd": "0.400000"}


def test_the_usage_api_costs_a_fixed_number_of_queries_and_never_reads_generations(owner: Any, owner_api: Any,
                                                                                     project: Any) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert owner_api.get("/api/v1/usage", {"group_by": "day", "from": "2025-01-01",
                                                   "to": "2025-03-14"}).status_code == 200
        _no_generation_scans(ctx)
        return len(ctx.captured_queries)

    queries()  # the first request also records the token's first use
    few = queries()
    for n in range(60):
        _use(owner, project, dt.date(2025, 1, 1) + dt.timedelta(days=n), f"fal/m{n % 7}")
    assert queries() == few


def test_the_usage_api_refuses_an_unknown_grouping_with_the_error_shape(owner_api: Any) -> None:
    response = owner_api.get("/api/v1/usage", {"group_by": "colour"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "group_by" in response.json()["error"]["fields"]


def test_the_usage_api_refuses_a_backwards_range(owner_api: Any) -> None:
    response = owner_api.get("/api/v1/usage", {"from": "2025-03-10", "to": "2025-03-01"})
    assert response.status_code == 400


def test_another_users_project_is_not_found_in_the_usage_api(outsider_api: Any, history: Any) -> None:
    response = outsider_api.get("/api/v1/usage", {"project": str(history["project"].pk)})
    assert response.status_code == 404


def test_the_usage_api_needs_authentication(client: Any) -> None:
    assert client.get("/api/v1/usage").status_code in (401, 403)


def test_the_csv_export_has_a_header_the_rows_and_a_total(owner_api: Any, history: Any) -> None:
    response = owner_api.get("/api/v1/usage.csv", {"group_by": "provider", "from": "2025-03-08", "to": "2025-03-14"},
                             HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "usage-provider-2025-03-08-2025-03-14.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["key", "label", "generations", "succeeded", "failed", "success_rate", "credits",
                       "provider_cost_usd"]
    assert rows[1] == ["fal", "fal", "4", "3", "1", "0.7500", "40", "0.400000"]
    assert rows[-1][:3] == ["total", "Total", "7"]


def test_the_csv_export_defuses_labels_a_spreadsheet_would_run(owner: Any, owner_api: Any) -> None:
    evil = project_create(owner=owner, name="=HYPERLINK(\"http://x\")")
    _use(owner, evil, timezone.localdate())
    rows = list(csv.reader(io.StringIO(owner_api.get("/api/v1/usage.csv", {"group_by": "project"}).content.decode())))
    assert rows[1][1].startswith("'=")


# --- the web page ------------------------------------------------------------------------------------------

def test_the_usage_page_shows_charts_a_table_and_a_csv_link(client: Any, owner: Any, history: Any) -> None:
    client.force_login(owner)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/usage/", {"group_by": "model", "from": "2025-03-01", "to": "2025-03-14"})
    assert response.status_code == 200
    _no_generation_scans(ctx)
    html = response.content.decode()
    assert 'id="usage-chart-data"' in html and "vendor/chart.umd.min.js" in html
    assert 'data-key="fal/flux"' in html and 'data-key="openai/gpt-image"' in html
    assert "export=csv" in html


def test_the_usage_page_answers_htmx_with_the_report_fragment(client: Any, owner: Any, history: Any) -> None:
    client.force_login(owner)
    response = client.get("/usage/", {"group_by": "provider"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="report"')
    assert "<html" not in html


def test_the_usage_page_exports_the_same_csv(client: Any, owner: Any, history: Any) -> None:
    client.force_login(owner)
    response = client.get("/usage/", {"group_by": "project", "from": "2025-03-01", "to": "2025-03-14",
                                      "export": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert b"Trailer" in response.content and b"Theirs" not in response.content


def test_a_bad_date_on_the_usage_page_shows_the_default_report_with_the_reason(client: Any, owner: Any) -> None:
    client.force_login(owner)
    response = client.get("/usage/", {"from": "yesterday"})
    assert response.status_code == 200
    assert "from must be a date" in response.content.decode()


def test_the_usage_page_hides_other_users_projects(client: Any, outsider: Any, history: Any) -> None:
    client.force_login(outsider)
    assert client.get("/usage/", {"project": str(history["project"].pk)}).status_code == 404


def test_the_usage_page_needs_a_signed_in_user(client: Any) -> None:
    assert client.get("/usage/").status_code == 302


# --- revenue (admin) --------------------------------------------------------------------------------------

def test_revenue_per_day_sets_credits_charged_against_provider_spend(owner: Any, project: Any,
                                                                    settings: Any) -> None:
    settings.CREDITS_PER_USD = 100
    today = timezone.localdate()
    credits_hold(user=owner, amount=300, reference="generation:a")
    hold_settle(reference="generation:a", amount=250)
    _use(owner, project, today, "fal/flux", credits=250, cost="1.50")
    stripe = system_account("stripe", AccountKind.STRIPE)
    wallet = _lock_wallet(owner.pk)
    _post(idempotency_key="cs_1", kind="topup", legs=[(stripe, -2000), (wallet, 2000)])
    _post(idempotency_key="refund:1", kind="refund", legs=[(wallet, -500), (stripe, 500)])

    rows = revenue_by_period(period="day", date_from=today - dt.timedelta(days=1), date_to=today)
    assert [row.period for row in rows] == [today, today - dt.timedelta(days=1)]
    row = rows[0]
    assert (row.credits_charged, row.generations, row.stripe_credits_sold, row.stripe_credits_refunded) == (250, 1, 2000, 500)
    assert (row.revenue_usd, row.provider_cost_usd, row.margin_usd) == (Decimal("2.50"), Decimal("1.5"), Decimal("1.00"))
    assert row.margin_rate == pytest.approx(0.4)
    assert rows[1].credits_charged == 0 and rows[1].margin_rate is None

    months = revenue_by_period(period="month", date_from=today.replace(day=1), date_to=today)
    assert [(m.period, m.credits_charged) for m in months] == [(today.replace(day=1), 250)]


def test_the_admin_revenue_page_lists_periods_for_staff_only(client: Any, owner: Any) -> None:
    admin = User.objects.create_superuser(email="admin@example.com", password="x" * 12)
    client.force_login(admin)
    response = client.get("/admin/billing/ledgeraccount/revenue/", {"period": "month"})
    assert response.status_code == 200
    assert 'id="revenue-table"' in response.content.decode()
    client.force_login(owner)
    assert client.get("/admin/billing/ledgeraccount/revenue/").status_code == 302  # to the admin login
