from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import ApiToken, ProviderKey, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "is_active", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser"]
    search_fields = ["email", "first_name", "last_name"]
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Moderators can see and revoke tokens (delete), never read them: only a digest is stored."""

    list_display = ["name", "token_key", "user", "created", "last_used_at", "expiry"]
    list_select_related = ["user"]
    search_fields = ["user__email", "name", "token_key"]
    autocomplete_fields = ["user"]
    readonly_fields = ["digest", "token_key", "user", "created", "last_used_at", "name", "expiry"]
    show_full_result_count = False

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False  # tokens are created by their owner, who sees them once


@admin.register(ProviderKey)
class ProviderKeyAdmin(admin.ModelAdmin):
    """Moderators see which users bring their own keys, and can remove one; never the key itself
    (the ciphertext and nonce are not even shown)."""

    list_display = ["user", "provider", "last4", "key_id", "verified_at", "updated_at"]
    list_filter = ["provider", "key_id"]
    list_select_related = ["user"]
    search_fields = ["user__email"]
    fields = ["user", "provider", "last4", "key_id", "verified_at", "created_at", "updated_at"]
    readonly_fields = fields
    show_full_result_count = False

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False  # keys are saved by their owner, after the provider accepts them

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
