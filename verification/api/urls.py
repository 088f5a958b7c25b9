from django.urls import path

from verification.api.views import CheckInDetailView, checkin_create

urlpatterns = [
    path("checkins/", checkin_create, name="api-checkin-list"),
    path("checkins/<str:pk>/", CheckInDetailView.as_view(), name="api-checkin-detail"),
]
