"""Which thresholds decide: the model's (its manifest's operating point) or the site's own.

A site that measured its own people (``manage.py calibrate --apply``, ``services/calibration.py``)
stores a ``SiteCalibration`` for the model version; from then on check-ins decided by that version
use its thresholds. The check-in flow asks here once per check-in, and the answer is a ``ModelInfo``
like the model's, with ``threshold_source`` saying where its thresholds came from (``model`` or
``site:<id>``), which every decision's audit entry records.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from verification.models import SiteCalibration

if TYPE_CHECKING:
    from verification.inference import ModelInfo

MODEL_SOURCE = "model"


def site_calibration_current(*, model_version: str) -> SiteCalibration | None:
    """The newest calibration stored for ``model_version``, or None."""
    return SiteCalibration.objects.filter(model_version=model_version).order_by("-created_at", "-pk").first()


def thresholds_effective(*, info: ModelInfo) -> ModelInfo:
    """``info`` with the site's thresholds for its model version when a calibration is in force."""
    site = site_calibration_current(model_version=info.version)
    if site is None or not site.thresholds:
        return dataclasses.replace(info, threshold_source=MODEL_SOURCE)
    per_k = {int(k): float(v) for k, v in site.thresholds.items()}
    one = per_k.get(1, per_k[min(per_k)])
    return dataclasses.replace(
        info, threshold=one, thresholds=tuple(sorted(per_k.items())), threshold_source=f"site:{site.pk}"
    )
