from django.urls import include, path

from verification import views
from verification.monitoring import views as monitoring_views

urlpatterns = [
    # The front page, and the admin's "View site" (issue 11, item 2: it led to a 404).
    path("", views.home, name="home"),
    path("api/v1/", include("verification.api.urls")),
    path("media/<path:path>", views.media, name="media"),
    # Prometheus (METRICS_TOKEN / METRICS_ALLOWED_NETWORKS); /healthz and /readyz: monitoring.middleware.
    path("metrics", monitoring_views.metrics, name="metrics"),
]
