"""Site calibrations (read-only records of applied thresholds)."""

from __future__ import annotations

from django.contrib import admin

from verification.admin.common import (
    ReadOnlyAdmin,
)
from verification.models import (
    SiteCalibration,
)


@admin.register(SiteCalibration)
class SiteCalibrationAdmin(ReadOnlyAdmin):
    """Thresholds a site measured on its own people (``manage.py calibrate --apply``); newest per version wins."""

    list_display = ["created_at", "model_version", "target_far", "thresholds", "people", "references", "created_by"]
    list_filter = ["model_version"]
    readonly_fields = ["model_version", "target_far", "thresholds", "figures", "people", "references", "created_by",
                       "created_at"]
