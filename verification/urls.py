from django.urls import include, path

from verification import views
from verification.monitoring import views as monitoring_views

urlpatterns = [
    path("api/v1/", include("verification.api.urls")),
    path("media/<path:path>", views.media, name="media"),
    # Prometheus (METRICS_TOKEN / METRICS_ALLOWED_NETWORKS); /healthz and /readyz: monitoring.middleware.
    path("metrics", monitoring_views.metrics, name="metrics"),
]
