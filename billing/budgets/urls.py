"""Budget and notification endpoints, included under /api/v1/ by config/urls.py."""

from django.urls import path

from billing.budgets.api import MeBudgetView, NotificationListView, NotificationReadView, ProjectBudgetView

urlpatterns = [
    path("projects/<uuid:project_id>/budget", ProjectBudgetView.as_view(), name="project-budget"),
    path("me/budget", MeBudgetView.as_view(), name="me-budget"),
    path("notifications", NotificationListView.as_view(), name="notification-list"),
    path("notifications/<int:notification_id>/read", NotificationReadView.as_view(), name="notification-read"),
]
