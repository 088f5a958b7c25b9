"""Check-ins (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from verification.admin.common import (
    ReadOnlyAdmin,
    may_view_snapshots,
)
from verification.models import (
    CheckIn,
)


@admin.register(CheckIn)
class CheckInAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "device", "claimed_external_id", "status", "decision", "reason", "score", "attempts"]
    list_filter = ["status", "decision", "reason", "device"]
    search_fields = ["claimed_external_id"]
    list_select_related = ["device"]
    date_hierarchy = "created_at"

    def get_fields(self, request: HttpRequest, obj: CheckIn | None = None) -> list[str]:
        fields = super().get_fields(request, obj)
        # The snapshot's link leads to a biometric image: shown only with the permission to view snapshots.
        return fields if may_view_snapshots(request) else [name for name in fields if name != "snapshot"]


# --- Lockouts (attempt limiting): read-only, ended early by the unlock action ------------------


# Operators see every lockout in force on the admin's front page (issue 9, item 5).
admin.site.index_template = "admin/verification/index.html"
