from django.urls import path

from verification.api.views import CheckInCreateView, CheckInDetailView

urlpatterns = [
    path("checkins/", CheckInCreateView.as_view(), name="api-checkin-list"),
    path("checkins/<str:pk>/", CheckInDetailView.as_view(), name="api-checkin-detail"),
]
