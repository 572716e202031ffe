"""Operator tools in the admin: grant or correct a user's credits (a ledger posting through
billing.adjustments.credits_adjust, with the reason and the acting admin; never an edit), and the
revenue page (credits charged, provider spend, Stripe sales and margin per day or month).

billing/admin/__init__.py mixes `LedgerOpsAdminMixin` into the ledger accounts' admin, which gives it two
pages (…/billing/ledgeraccount/adjust/ and …/revenue/), links to them above the list, and an action
that opens the adjust form for a selected wallet. Importing this module also registers the referral
admins.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from billing.adjustments import credits_adjust
from billing.models import LedgerAccount, Referral, ReferralCode
from billing.services import credits_summary
from billing.usage.services import revenue_by_period, revenue_total
from core.errors import ServiceError


class CreditAdjustForm(forms.Form):
    email = forms.EmailField(label="User's email")
    amount = forms.IntegerField(help_text="Credits to add; negative to remove.")
    reason = forms.CharField(max_length=200, help_text="Kept on the posting, with your name. The user may see it.")
    force = forms.BooleanField(required=False, label="Force",
                               help_text="Remove credits even beyond what is available (a clawback); the wallet "
                                         "may go below zero and is then flagged.")
    # Made when the form is first shown: submitting twice (a double click, a back-button resubmit)
    # posts once.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Enter a positive or negative number of credits.")
        return amount

    def clean_email(self) -> Any:
        email = self.cleaned_data["email"]
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None:
            raise forms.ValidationError("No user with that email.")
        return user


class RevenueFilterForm(forms.Form):
    period = forms.ChoiceField(choices=[("day", "Per day"), ("month", "Per month")], required=False)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    MAX_DAYS = 800  # the page lists every period in the range

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        period = data.get("period") or "day"
        date_to = data.get("date_to") or timezone.localdate()
        default_from = (date_to - dt.timedelta(days=29) if period == "day"
                        else (date_to.replace(day=1) - dt.timedelta(days=335)).replace(day=1))
        date_from = data.get("date_from") or default_from
        if date_from > date_to:
            raise forms.ValidationError("From must be on or before To.")
        if (date_to - date_from).days > self.MAX_DAYS:
            raise forms.ValidationError(f"Pick a range of at most {self.MAX_DAYS} days.")
        return {"period": period, "date_from": date_from, "date_to": date_to}


class LedgerOpsAdminMixin:
    """For billing.admin.LedgerAccountAdmin (a ModelAdmin): the adjust and revenue pages."""

    change_list_template = "admin/billing/ledgeraccount/change_list.html"
    actions = ["adjust_credits_action"]

    admin_site: admin.AdminSite

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("adjust/", self.admin_site.admin_view(self.adjust_view), name="billing_credits_adjust"),
            path("revenue/", self.admin_site.admin_view(self.revenue_view), name="billing_revenue"),
        ]
        return own + super().get_urls()  # type: ignore[misc]

    @admin.action(description="Grant or correct credits of the selected wallet")
    def adjust_credits_action(self, request: HttpRequest, queryset: QuerySet[LedgerAccount]) -> HttpResponse | None:
        wallets = list(queryset.filter(kind="wallet").select_related("user")[:2])
        if len(wallets) != 1:
            messages.error(request, "Select exactly one user wallet to adjust.")
            return None
        url = reverse("admin:billing_credits_adjust")
        return HttpResponseRedirect(f"{url}?{urlencode({'email': wallets[0].user.email})}")

    def adjust_view(self, request: HttpRequest) -> HttpResponse:
        # The ledger admin is read-only (no change permission); posting a correction needs the right
        # to add ledger transactions, which superusers have and other staff get explicitly.
        if not request.user.has_perm("billing.add_transaction"):
            raise PermissionDenied
        if request.method == "POST":
            form = CreditAdjustForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    credits_adjust(user=data["email"], amount=data["amount"], reason=data["reason"],
                                            admin=request.user, idempotency_key=data["idempotency_key"],
                                            force=data["force"])
                except ServiceError as exc:
                    form.add_error(next(iter(exc.fields), None), exc.message)
                else:
                    summary = credits_summary(user=data["email"])
                    messages.success(request, f"Posted {data['amount']:+d} credits for {data['email'].email}: "
                                              f"balance {summary.balance}, available {summary.available}.")
                    # A fresh form (and key) for the next adjustment; reloading this page posts nothing.
                    return HttpResponseRedirect(reverse("admin:billing_credits_adjust"))
        else:
            form = CreditAdjustForm(initial={"email": request.GET.get("email", ""), "idempotency_key": uuid.uuid4().hex})
        return TemplateResponse(request, "admin/billing/credits_adjust.html", {
            **self.admin_site.each_context(request), "title": "Grant or correct credits", "form": form,
            "opts": LedgerAccount._meta,
        })

    def revenue_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("billing.view_transaction"):
            raise PermissionDenied
        form = RevenueFilterForm(request.GET)
        if not form.is_valid():  # the errors show above the table; the table shows the default range
            default = RevenueFilterForm({})
            default.is_valid()
            params = default.cleaned_data
        else:
            params = form.cleaned_data
        rows = revenue_by_period(period=params["period"], date_from=params["date_from"], date_to=params["date_to"])
        return TemplateResponse(request, "admin/billing/revenue.html", {
            **self.admin_site.each_context(request), "title": "Revenue, provider spend and margin",
            "form": form, "params": params, "rows": rows, "total": revenue_total(rows), "opts": LedgerAccount._meta,
        })


@admin.register(ReferralCode)
class ReferralCodeAdmin(admin.ModelAdmin):
    list_display = ["code", "user", "created_at"]
    list_select_related = ["user"]
    search_fields = ["code", "user__email"]
    show_full_result_count = False
    readonly_fields = ["user", "code", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made on first use by billing.referrals


@admin.register(Referral)
class ReferralAdmin(admin.ModelAdmin):
    """Redemptions: each paid both users once (see the ledger's referral postings). Read-only."""

    list_display = ["created_at", "referred", "code"]
    list_select_related = ["referred", "code__user"]
    search_fields = ["referred__email", "code__code", "code__user__email"]
    show_full_result_count = False
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
