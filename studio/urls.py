from django.urls import path

from studio import views
from studio.views import budgets as budget_views
from studio.views import credits as credits_views
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
    path("a/<uuid:asset_id>/", views.asset_page, name="asset"),
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
