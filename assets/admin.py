from django.contrib import admin

from assets.models import Asset


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "project", "owner", "source", "size", "created_at"]
    list_filter = ["kind", "source"]
    list_select_related = ["project", "owner"]
    search_fields = ["name", "sha256", "owner__email", "project__name"]
    autocomplete_fields = ["owner", "project", "parent"]
    raw_id_fields = ["generation"]
    readonly_fields = ["id", "owner", "project", "file", "mime", "size", "sha256", "width", "height", "duration",
                       "source", "generation", "created_at"]
    show_full_result_count = False
    date_hierarchy = "created_at"
