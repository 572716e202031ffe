from django.contrib import admin
from django.utils import timezone

from billing.admin.ops import LedgerOpsAdminMixin
from billing.models import CheckoutSession, Entry, Hold, LedgerAccount, StripeEvent, Transaction, WalletFlag


class ReadOnlyAdmin(admin.ModelAdmin):
    """The ledger is append-only: no add, change or delete here. Corrections are postings made by
    a service, never edits."""

    show_full_result_count = False

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


class EntryInline(admin.TabularInline):
    model = Entry
    extra = 0
    can_delete = False
    readonly_fields = ["account", "amount", "created_at"]

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(LedgerAccount)
class LedgerAccountAdmin(LedgerOpsAdminMixin, ReadOnlyAdmin):
    """Wallets and system accounts; grants and corrections (as postings) and the revenue report hang
    off this list (billing.admin.ops)."""

    list_display = ["__str__", "kind", "balance", "held", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["user"]
    search_fields = ["user__email", "code"]


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "memo", "reference", "idempotency_key", "created_by"]
    list_filter = ["kind"]
    list_select_related = ["created_by"]
    search_fields = ["idempotency_key", "reference", "memo"]
    inlines = [EntryInline]
    date_hierarchy = "created_at"


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["reference", "account", "amount", "status", "settled_amount", "created_at", "closed_at"]
    list_filter = ["status"]
    list_select_related = ["account__user"]
    search_fields = ["reference", "account__user__email"]


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "pack", "credits", "amount_total", "currency", "status", "refunded_credits", "created_at"]
    list_filter = ["status"]
    list_select_related = ["user", "pack"]
    search_fields = ["id", "payment_intent", "user__email"]
    date_hierarchy = "created_at"


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "created", "received_at", "processed_at", "outcome"]
    list_filter = ["type"]
    search_fields = ["id"]


@admin.register(WalletFlag)
class WalletFlagAdmin(ReadOnlyAdmin):
    """Wallets a refund clawback took below zero. Resolving records who looked at it; the money is
    corrected, if at all, with a ledger posting (a grant or correction), never by editing."""

    list_display = ["account", "amount", "reason", "reference", "created_at", "resolved_at", "resolved_by"]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter)]
    list_select_related = ["account__user", "resolved_by"]
    actions = ["resolve"]

    @admin.action(description="Mark selected flags resolved")
    def resolve(self, request, queryset):  # type: ignore[no-untyped-def]
        done = queryset.filter(resolved_at__isnull=True).update(resolved_at=timezone.now(), resolved_by=request.user)
        self.message_user(request, f"{done} flag(s) resolved.")

    def get_actions(self, request):  # type: ignore[no-untyped-def]
        # ReadOnlyAdmin forbids changes; resolving is the one action operators need here.
        actions = super().get_actions(request)
        return {k: v for k, v in actions.items() if k == "resolve"}


import billing.admin.plans  # noqa: E402, F401  (plans, budgets, alerts, notifications)
