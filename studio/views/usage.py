"""The usage page: charts, a table and a CSV export of the user's generations, credits, provider cost and
success rate, per day, month, model, provider or project. Reads only the daily rollup (billing.usage.services).
The filter form re-renders the report fragment for htmx (`#report`), the whole page otherwise."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.usage.api import usage_csv_response
from billing.usage.services import GROUPINGS, UsageQuery, UsageRow, usage_rows, usage_totals
from core.errors import InvalidRequest
from orchestration.usage import usage_query_parse
from projects.selectors import project_list_for_user

TEMPLATE = "studio/usage.html"
CHART_TOP = 12  # bars for models, providers and projects; the table lists all of them
GROUP_LABELS = {"day": "Day", "month": "Month", "model": "Model", "provider": "Provider", "project": "Project"}


def _chart(query: UsageQuery, rows: list[UsageRow]) -> dict[str, Any]:
    shown = rows if query.group_by in ("day", "month") else rows[:CHART_TOP]
    return {
        "kind": "time" if query.group_by in ("day", "month") else "category",
        "labels": [row.label for row in shown],
        "credits": [row.credits for row in shown],
        "succeeded": [row.succeeded for row in shown],
        "failed": [row.failed for row in shown],
        "cost": [float(row.provider_cost_usd) for row in shown],
    }


@login_required
@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    error = ""
    try:
        query = usage_query_parse(user=request.user, params=request.GET)
    except InvalidRequest as exc:
        # A hand-edited URL: show the default report with the reason, rather than an error page.
        error = exc.message
        query = usage_query_parse(user=request.user, params={})
    rows = usage_rows(user=request.user, query=query)
    totals = usage_totals(user=request.user, query=query)
    if request.GET.get("export") == "csv" and not error:
        return usage_csv_response(query, rows, totals)
    context = {
        "query": query, "rows": rows, "totals": totals, "error": error, "chart": _chart(query, rows),
        "groupings": [(key, GROUP_LABELS[key]) for key in GROUPINGS], "group_label": GROUP_LABELS[query.group_by],
        "csv_query": urlencode({**query.as_params(), "export": "csv"}),
    }
    if request.htmx:
        return render(request, f"{TEMPLATE}#report", context)
    context["projects"] = list(project_list_for_user(request.user).only("id", "name").order_by("name"))
    return render(request, TEMPLATE, context)
