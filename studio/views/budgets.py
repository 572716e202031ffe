"""The budget card (on the project page for the project's budget, on the account page for the user's
monthly cap) and the notifications list. Each view answers htmx with the fragment from
templates/studio/_budget.html and a plain POST with a redirect back, so both work without JavaScript."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing.budgets.services import (
    budget_clear,
    budget_get,
    budget_status,
    notification_list_for_user,
    notification_mark_read,
    notifications_mark_all_read,
)
from billing.models import BudgetPeriod
from core.errors import ServiceError
from generations.pricing import credits_display
from orchestration.budgets import budget_set
from projects.selectors import project_get_for_user

TEMPLATE = "studio/_budget.html"
NOTIFICATION_LIMIT = 20


class BudgetForm(forms.Form):
    limit = forms.IntegerField(min_value=0, label="Limit (credits)")
    period = forms.ChoiceField(choices=BudgetPeriod.choices, initial=BudgetPeriod.MONTHLY, required=False)


# --- context for the pages that show the card ---------------------------------------------------------

def budget_card_context(user: Any, *, project: Any = None, form: BudgetForm | None = None, note: str = "",
                        error: str = "") -> dict[str, Any]:
    """What `{% include "studio/_budget.html" %}` needs, for a project's budget or (no project) the
    user's own monthly cap. Two queries with a budget, one without."""
    budget = budget_get(project=project) if project is not None else budget_get(user=user)
    status = budget_status(budget) if budget is not None else None
    if form is None:
        initial = {"limit": budget.limit_credits, "period": budget.period} if budget else {}
        form = BudgetForm(initial=initial)
    action = (reverse("studio:project-budget", kwargs={"project_id": project.pk}) if project is not None
              else reverse("studio:account-budget"))
    return {"budget_card": {"scope": "project" if project is not None else "user", "project": project,
                            "status": status, "form": form, "action": action, "note": note, "error": error}}


def notifications_context(user: Any) -> dict[str, Any]:
    """What `{% include "studio/_budget.html#notifications" %}` needs: the newest notifications."""
    rows = list(notification_list_for_user(user)[:NOTIFICATION_LIMIT])
    return {"notifications": rows, "unread_count": sum(1 for n in rows if n.read_at is None)}


# --- views -------------------------------------------------------------------------------------------------

def _save(request: HttpRequest, *, project: Any = None) -> HttpResponse:
    owner = {"project": project} if project is not None else {"user": request.user}
    back = (reverse("studio:project", kwargs={"project_id": project.pk}) if project is not None
            else reverse("studio:account")) + "#budget"
    form: BudgetForm | None = None
    note = error = ""
    if request.POST.get("action") == "clear":
        note = "Budget removed." if budget_clear(**owner) else "There was no budget to remove."
    else:
        form = BudgetForm(request.POST)
        if form.is_valid():
            try:
                period = form.cleaned_data["period"] or BudgetPeriod.MONTHLY
                budget = budget_set(**owner, limit_credits=form.cleaned_data["limit"], period=period)
            except ServiceError as exc:
                error = exc.message
            else:
                note = (f"Budget set: {credits_display(budget.limit_credits)} "
                        f"{'a month' if budget.period == 'monthly' else 'in total'}.")
                form = None
        else:
            error = "Enter a whole number of credits, 0 or more."
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, note)
        return redirect(back)
    ctx = budget_card_context(request.user, project=project, form=form, note=note, error=error)
    return render(request, f"{TEMPLATE}#budget-card", ctx)


@login_required
@require_POST
def project_budget_view(request: HttpRequest, project_id: uuid.UUID) -> HttpResponse:
    return _save(request, project=project_get_for_user(request.user, project_id, write=True))


@login_required
@require_POST
def account_budget_view(request: HttpRequest) -> HttpResponse:
    return _save(request)


@login_required
@require_POST
def notification_read_view(request: HttpRequest, notification_id: int) -> HttpResponse:
    notification_mark_read(user=request.user, notification_id=notification_id)
    if request.htmx:
        return render(request, f"{TEMPLATE}#notifications", notifications_context(request.user))
    return redirect(reverse("studio:account") + "#notifications")


@login_required
@require_POST
def notifications_read_all_view(request: HttpRequest) -> HttpResponse:
    notifications_mark_all_read(user=request.user)
    if request.htmx:
        return render(request, f"{TEMPLATE}#notifications", notifications_context(request.user))
    return redirect(reverse("studio:account") + "#notifications")
