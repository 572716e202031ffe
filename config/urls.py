from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from accounts.api import MeView, ProviderKeyViewSet
from assets.api.assets import AssetViewSet, TagViewSet
from assets.api.collections import AssetDuplicatesView, AssetLineageView, CollectionViewSet
from assets.api.export import AssetExportView, ExportLinkView, ProjectExportView
from assets.api.previews import AssetThumbnailView, asset_preview_file
from assets.api.shares import ShareViewSet
from assets.api.storage import StorageView
from generations.api import GenerationViewSet, ModelViewSet
from generations.webhooks import provider_webhook
from projects.api import ProjectViewSet

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("projects", ProjectViewSet, basename="project")
router.register("models", ModelViewSet, basename="model")
router.register("generations", GenerationViewSet, basename="generation")
router.register("assets", AssetViewSet, basename="asset")
router.register("tags", TagViewSet, basename="tag")
router.register("collections", CollectionViewSet, basename="collection")
router.register("shares", ShareViewSet, basename="share")
router.register("provider-keys", ProviderKeyViewSet, basename="provider-key")

urlpatterns = [
    path("api/v1/me", MeView.as_view(), name="me"),
    path("api/v1/storage", StorageView.as_view(), name="storage"),
    path("api/v1/assets/<uuid:pk>/lineage", AssetLineageView.as_view(), name="asset-lineage"),
    path("api/v1/assets/<uuid:pk>/duplicates", AssetDuplicatesView.as_view(), name="asset-duplicates"),
    path("api/v1/assets/<uuid:pk>/thumbnail", AssetThumbnailView.as_view(), name="asset-thumbnail"),
    path("api/v1/assets/export", AssetExportView.as_view(), name="asset-export"),
    path("api/v1/assets/export/<str:token>", ExportLinkView.as_view(), name="asset-export-link"),
    path("api/v1/projects/<uuid:project_id>/export", ProjectExportView.as_view(), name="project-export"),
    path("api/v1/", include(router.urls)),
    path("api/v1/", include("billing.budgets.urls")),
    path("api/v1/", include("billing.usage.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("", include("billing.urls")),  # before the generic provider webhook: /webhooks/stripe is ours
    path("webhooks/<str:provider>", provider_webhook, name="provider-webhook"),
    path("previews/<uuid:pk>/<str:size>", asset_preview_file, name="asset-preview-file"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", include("studio.urls")),
]
