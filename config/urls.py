from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from accounts.api import MeView
from assets.api import AssetViewSet
from generations.api import GenerationViewSet, ModelViewSet
from projects.api import ProjectViewSet

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("projects", ProjectViewSet, basename="project")
router.register("models", ModelViewSet, basename="model")
router.register("generations", GenerationViewSet, basename="generation")
router.register("assets", AssetViewSet, basename="asset")

urlpatterns = [
    path("api/v1/me", MeView.as_view(), name="me"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", include("studio.urls")),
]
