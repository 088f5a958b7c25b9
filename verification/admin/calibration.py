"""Site calibrations (read-only records of applied thresholds)."""

from __future__ import annotations

from django.contrib import admin

from verification.admin.common import (
    ReadOnlyAdmin,
)
from verification.formatting import score_text
from verification.models import (
    SiteCalibration,
)


@admin.register(SiteCalibration)
class SiteCalibrationAdmin(ReadOnlyAdmin):
    """Thresholds a site measured on its own people (``manage.py calibrate --apply``); newest per version wins."""

    list_display = ["created_at", "model_version", "target_far", "thresholds", "review_target_far", "review_thresholds",
                     "expected_rates", "people", "references", "created_by"]
    list_filter = ["model_version"]
    readonly_fields = ["model_version", "target_far", "thresholds", "review_target_far", "review_thresholds",
                       "expected_rates", "figures", "people", "references", "created_by", "created_at"]

    @admin.display(description="expected FAR / FRR (site's own people)")
    def expected_rates(self, obj: SiteCalibration) -> str:
        """Per reference count: the admit threshold and the review band's lower edge, each with the FAR and
        FRR measured there (at the lower edge: strangers reaching a guard or beyond / genuine refused outright)."""
        parts = []
        for key, row in sorted((obj.figures or {}).items(), key=lambda item: int(item[0])):
            admit, review = row.get("proposed"), row.get("review_proposed")
            if not admit:
                continue
            text = f"k={key}: admit {score_text(admit['threshold'])} FAR {admit['far']:.2%} FRR {admit['frr']:.1%}"
            if review and key in (obj.review_thresholds or {}):
                text += f"; review {score_text(review['threshold'])} FAR {review['far']:.2%} FRR {review['frr']:.1%}"
            parts.append(text)
        return " | ".join(parts) or "-"
