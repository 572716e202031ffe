from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from accounts.api import MeView, ProviderKeyViewSet
from assets.api import AssetViewSet
from generations.api import GenerationViewSet, ModelViewSet
from generations.webhooks import provider_webhook
from projects.api import ProjectViewSet

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("projects", ProjectViewSet, basename="project")
router.register("models", ModelViewSet, basename="model")
router.register("generations", GenerationViewSet, basename="generation")
router.register("assets", AssetViewSet, basename="asset")
router.register("provider-keys", ProviderKeyViewSet, basename="provider-key")

urlpatterns = [
    path("api/v1/me", MeView.as_view(), name="me"),
    path("api/v1/", include(router.urls)),
    path("api/v1/", include("billing.budget_urls")),
    path("api/v1/", include("billing.usage_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("", include("billing.urls")),  # before the generic provider webhook: /webhooks/stripe is ours
    path("webhooks/<str:provider>", provider_webhook, name="provider-webhook"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", include("studio.urls")),
]
