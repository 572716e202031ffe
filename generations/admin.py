from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from generations.health import provider_health
from generations.models import AIModel, Generation, PriceCard, ProviderOutcome
from generations.services import generation_cancel


class PriceCardInline(admin.TabularInline):
    model = PriceCard
    extra = 0
    can_delete = False
    readonly_fields = ["version", "unit", "usd_per_unit", "quantity", "effective_from", "source", "created_at"]

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False  # prices come from the catalog files, versioned


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "provider", "operation", "active", "featured", "catalog_version"]
    list_filter = ["provider", "operation", "active", "featured"]
    list_editable = ["active", "featured"]
    search_fields = ["id", "name"]
    readonly_fields = ["id", "provider", "provider_model", "operation", "output_kind", "input_schema", "config",
                       "catalog_version", "updated_at"]
    inlines = [PriceCardInline]
    actions = ["activate", "deactivate"]

    @admin.action(description="Activate selected models")
    def activate(self, request: HttpRequest, queryset: QuerySet[AIModel]) -> None:
        queryset.update(active=True)

    @admin.action(description="Deactivate selected models (hidden from the catalog; history kept)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[AIModel]) -> None:
        queryset.update(active=False)


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    """Read-only history; the only write is cancel, through the same service users call."""

    list_display = ["id", "model", "status", "progress", "user", "project", "credits_charged", "created_at"]
    list_filter = ["status", "provider"]
    list_select_related = ["model", "user", "project"]
    search_fields = ["id", "user__email", "provider_request_id", "project__name"]
    show_full_result_count = False
    date_hierarchy = "created_at"
    actions = ["cancel"]

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return [field.name for field in Generation._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    @admin.action(description="Cancel selected active generations (releases their holds)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        done = 0
        for generation in queryset.select_related("user").filter(status__in=["queued", "running"]):
            generation_cancel(user=generation.user, generation_id=generation.pk)
            done += 1
        messages.info(request, f"Cancel requested for {done} generation(s).")


@admin.register(ProviderOutcome)
class ProviderOutcomeAdmin(admin.ModelAdmin):
    """Provider health: the last hour's and day's success rate and latency per provider and model on
    top, then the raw outcomes. Read-only."""

    list_display = ["created_at", "provider", "model", "ok", "transient", "error_code", "latency_ms"]
    list_filter = ["provider", "ok", "transient"]
    search_fields = ["model", "error_code"]
    show_full_result_count = False
    date_hierarchy = "created_at"
    change_list_template = "admin/generations/provideroutcome/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def changelist_view(self, request, extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = {**(extra_context or {}), "health_windows": [
            ("Last hour", provider_health(window=timedelta(hours=1))),
            ("Last 24 hours", provider_health(window=timedelta(hours=24))),
        ]}
        return super().changelist_view(request, extra_context=extra_context)
