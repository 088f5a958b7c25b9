"""Check-ins (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from verification.admin.common import (
    ADMIN_CSS,
    ReadOnlyAdmin,
    may_view_snapshots,
    when,
)
from verification.formatting import score_text
from verification.models import (
    CheckIn,
)


@admin.register(CheckIn)
class CheckInAdmin(ReadOnlyAdmin):
    list_display = [
        "id", "received", "device", "claimed_external_id", "status", "decision", "reason", "score_display", "attempts",
    ]
    list_filter = ["status", "decision", "reason", "device"]
    search_fields = ["claimed_external_id", "device__name"]
    list_select_related = ["device"]
    date_hierarchy = "created_at"

    class Media:
        css = {"all": [ADMIN_CSS]}

    @admin.display(description="Received", ordering="created_at")
    def received(self, obj: CheckIn) -> str:
        return when(obj.created_at)

    @admin.display(description="Score", ordering="score")
    def score_display(self, obj: CheckIn) -> str:
        return score_text(obj.score)

    def get_fields(self, request: HttpRequest, obj: CheckIn | None = None) -> list[str]:
        fields = super().get_fields(request, obj)
        # The snapshot's link leads to a biometric image: shown only with the permission to view snapshots.
        return fields if may_view_snapshots(request) else [name for name in fields if name != "snapshot"]
