"""Thresholds a site applied from its own calibration."""

from __future__ import annotations

from django.db import models

from verification.models.base import (
    TimeStamped,
)


class SiteCalibration(TimeStamped):
    """A site's own thresholds for one model version, measured on its ready references (``manage.py
    calibrate --apply``). The newest row of the deciding model's version wins; one with no thresholds
    sends that version back to the model's own. Rows are kept as history (``services/thresholds.py``).
    """

    model_version = models.CharField(max_length=64)
    target_far = models.FloatField(help_text="The false-accept rate the thresholds were chosen for.")
    # {"1": t1, "2": t2, ...}: threshold of the mean rule per reference count. Empty: the model's thresholds.
    thresholds = models.JSONField(default=dict, blank=True)
    # The review band's lower edge per reference count, chosen at ``review_target_far`` the same way
    # (empty: the model's band, ``services/thresholds.py``).
    review_target_far = models.FloatField(null=True, blank=True, help_text="The FAR the review band's lower edge was chosen for.")
    review_thresholds = models.JSONField(default=dict, blank=True)
    # Per reference count: trials, FAR and FRR with 95 % intervals at the previous and the new thresholds.
    figures = models.JSONField(default=dict, blank=True)
    people = models.PositiveIntegerField(default=0, help_text="People with ready references measured.")
    references = models.PositiveIntegerField(default=0, help_text="Ready references measured.")
    created_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # thresholds_effective, on every check-in: "newest calibration of model version V".
            models.Index(fields=["model_version", "created_at"], name="sitecal_version_created_idx"),
        ]

    def __str__(self) -> str:
        return f"Site calibration #{self.pk} of {self.model_version}"
