from django.urls import path

from studio import views
from studio.views import assets as asset_views
from studio.views import budgets as budget_views
from studio.views import collections as collection_views
from studio.views import credits as credits_views
from studio.views import export as export_views
from studio.views import gallery as gallery_views
from studio.views import shares as share_views
from studio.views import trash as trash_views
from studio.views.usage import usage_page

app_name = "studio"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("p/<uuid:project_id>/", views.project_page, name="project"),
    path("p/<uuid:project_id>/edit", views.project_edit, name="project-edit"),
    path("p/<uuid:project_id>/delete", views.project_delete_view, name="project-delete"),
    path("p/<uuid:project_id>/generate", views.generate, name="generate"),
    path("p/<uuid:project_id>/estimate", views.estimate, name="estimate"),
    path("p/<uuid:project_id>/upload", views.asset_upload, name="asset-upload"),
    path("p/<uuid:project_id>/export", export_views.project_export, name="project-export"),
    path("export", export_views.assets_export, name="export-selection"),
    path("gallery/", gallery_views.gallery_page, name="gallery"),
    path("gallery/bulk", gallery_views.gallery_bulk, name="gallery-bulk"),
    path("p/<uuid:project_id>/gallery", gallery_views.project_gallery_page, name="project-gallery"),
    path("a/<uuid:asset_id>/", views.asset_page, name="asset"),
    path("a/<uuid:asset_id>/organise", asset_views.asset_organise, name="asset-organise"),
    path("a/<uuid:asset_id>/trash", trash_views.asset_trash_view, name="asset-trash"),
    path("a/<uuid:asset_id>/restore", trash_views.asset_restore_view, name="asset-restore"),
    path("collections/", collection_views.collections_page, name="collections"),
    path("collections/add", collection_views.collection_add, name="collection-add"),
    path("collections/<uuid:collection_id>/", collection_views.collection_page, name="collection"),
    path("collections/<uuid:collection_id>/edit", collection_views.collection_edit, name="collection-edit"),
    path("collections/<uuid:collection_id>/delete", collection_views.collection_delete_view, name="collection-delete"),
    path("collections/<uuid:collection_id>/move", collection_views.collection_move, name="collection-move"),
    path("collections/<uuid:collection_id>/reorder", collection_views.collection_reorder_view,
         name="collection-reorder"),
    path("collections/<uuid:collection_id>/remove", collection_views.collection_remove, name="collection-remove"),
    path("shares/", share_views.shares_page, name="shares"),
    path("shares/new", share_views.share_create_view, name="share-create"),
    path("shares/<uuid:share_id>/revoke", share_views.share_revoke_view, name="share-revoke"),
    path("s/<str:token>", share_views.shared_page, name="shared"),
    path("s/<str:token>/a/<uuid:asset_id>", share_views.shared_asset_page, name="shared-asset"),
    path("s/<str:token>/file/<uuid:asset_id>", share_views.shared_file, name="shared-file"),
    path("s/<str:token>/thumb/<uuid:asset_id>", share_views.shared_thumb, name="shared-thumb"),
    path("trash/", trash_views.trash_page, name="trash"),
    path("trash/empty", trash_views.trash_empty_view, name="trash-empty"),
    path("trash/<uuid:asset_id>/delete", trash_views.trash_delete_view, name="trash-delete"),
    path("g/<uuid:generation_id>/", views.generation_page, name="generation"),
    path("g/<uuid:generation_id>/cancel", views.generation_cancel_view, name="generation-cancel"),
    path("account/", views.account_page, name="account"),
    path("p/<uuid:project_id>/budget", budget_views.project_budget_view, name="project-budget"),
    path("account/budget", budget_views.account_budget_view, name="account-budget"),
    path("notifications/<int:notification_id>/read", budget_views.notification_read_view, name="notification-read"),
    path("notifications/read", budget_views.notifications_read_all_view, name="notifications-read-all"),
    path("usage/", usage_page, name="usage"),
    path("credits/", credits_views.credits_page, name="credits"),
    path("credits/checkout", credits_views.credits_checkout, name="credits-checkout"),
    path("credits/success", credits_views.credits_success, name="credits-success"),
    path("account/tokens", views.token_create, name="token-create"),
    path("account/tokens/<str:token_key>/revoke", views.token_revoke, name="token-revoke"),
    path("account/keys/<str:provider>", views.provider_key_save_view, name="provider-key-save"),
    path("account/keys/<str:provider>/delete", views.provider_key_delete_view, name="provider-key-delete"),
]
