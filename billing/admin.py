from django.contrib import admin

from billing.models import Entry, Hold, LedgerAccount, Transaction


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
class LedgerAccountAdmin(ReadOnlyAdmin):
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
