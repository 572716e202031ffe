"""Admin for plans, budgets, alerts and notifications (imported by billing/admin/__init__.py).

Plans are edited here: their limits apply from the next request (billing/limits.py compares the live
counts with whatever the plan says now). Budget usage, alerts and notifications are records of what
happened and are read-only; a budget's limit is editable, like in the app."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing.budgets.services import budget_status
from billing.models import Budget, BudgetAlert, BudgetUsage, Notification, Plan, UserPlan


class _ReadOnly(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "credits_per_usd", "generations_per_hour", "uploads_per_day",
                    "api_calls_per_minute", "is_default"]
    list_editable = ["credits_per_usd", "generations_per_hour", "uploads_per_day", "api_calls_per_minute"]
    search_fields = ["code", "name"]
    prepopulated_fields = {"code": ["name"]}

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Assignments PROTECT their plan; a plan nobody is on can go.
        return super().has_delete_permission(request, obj) and (obj is None or not obj.assignments.exists())


@admin.register(UserPlan)
class UserPlanAdmin(admin.ModelAdmin):
    list_display = ["user", "plan", "since"]
    list_filter = ["plan"]
    list_select_related = ["user", "plan"]
    autocomplete_fields = ["user"]
    search_fields = ["user__email"]
    show_full_result_count = False


class BudgetUsageInline(admin.TabularInline):
    model = BudgetUsage
    extra = 0
    can_delete = False
    readonly_fields = ["period_start", "spent", "held"]
    ordering = ["-period_start"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "user", "period", "limit_credits", "created_at"]
    list_filter = ["period"]
    list_select_related = ["project", "user"]
    autocomplete_fields = ["project", "user"]
    search_fields = ["project__name", "project__owner__email", "user__email"]
    # The usage figure costs two queries, so it is on the change page only, not in the list.
    readonly_fields = ["this_period", "created_at"]
    inlines = [BudgetUsageInline]
    show_full_result_count = False

    @admin.display(description="This period (spent + held / limit)")
    def this_period(self, obj: Budget) -> str:
        status = budget_status(obj)
        return f"{status.spent} + {status.held} / {status.limit} ({status.percent}%)"


@admin.register(BudgetAlert)
class BudgetAlertAdmin(_ReadOnly):
    list_display = ["budget", "period_start", "threshold", "created_at"]
    list_filter = ["threshold"]
    list_select_related = ["budget__project", "budget__user"]
    date_hierarchy = "created_at"


@admin.register(Notification)
class NotificationAdmin(_ReadOnly):
    list_display = ["user", "kind", "message", "created_at", "read_at"]
    list_filter = ["kind"]
    list_select_related = ["user"]
    search_fields = ["user__email", "message"]
    date_hierarchy = "created_at"
