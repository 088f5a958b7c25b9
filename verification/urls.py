from django.urls import include, path

from verification import views

urlpatterns = [
    path("api/v1/", include("verification.api.urls")),
    path("media/<path:path>", views.media, name="media"),
]
