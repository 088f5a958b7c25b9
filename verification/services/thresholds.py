"""Which thresholds decide: the model's (its manifest's operating point) or the site's own.

A site that measured its own people (``manage.py calibrate --apply``, ``services/calibration.py``)
stores a ``SiteCalibration`` for the model version; from then on check-ins decided by that version
use its thresholds (and its review band's lower edges, when it measured them). The check-in flow asks
here once per check-in, and the answer is a ``ModelInfo`` like the model's, with ``threshold_source``
saying where its thresholds came from (``model`` or ``site:<id>``), which every decision's audit entry
records. ``thresholds_table`` is what the review queue shows: both thresholds with their expected rates.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

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
    # The review band's lower edges come with the admit thresholds when the site measured them (a
    # calibration from before the band keeps the model's, never above the site's admit thresholds:
    # ``ModelInfo.review_threshold_for``).
    review = {}
    if site.review_thresholds:
        review = {"review_thresholds": tuple(sorted((int(k), float(v)) for k, v in site.review_thresholds.items())),
                  "review_far": site.review_target_far, "review_expected": ()}
    return dataclasses.replace(
        info, threshold=one, thresholds=tuple(sorted(per_k.items())), threshold_source=f"site:{site.pk}", **review
    )


# --- What the review queue shows above the queue: both thresholds with their expected rates -------------

# Relative to the repository (and to the images, which copy it whole): read as JSON, never through ``ml``,
# which the web process does not import. ``tests/verification/test_reviews.py`` checks it is the shipped
# model's manifest (``ml.inference.SHIPPED_MODEL_DIR``).
SHIPPED_MANIFEST = Path(__file__).resolve().parents[2] / "ml" / "models" / "siamese-lfw-3" / "manifest.json"


@dataclass(frozen=True)
class BandRow:
    """One reference count's thresholds: admit at ``threshold``, a guard decides from ``review_threshold``.
    ``far``/``frr`` at the admit threshold; ``review_far`` (strangers reaching a guard or beyond) and
    ``review_frr`` (genuine refused outright) at the review threshold; None where not measured."""

    references: int
    threshold: float
    far: float | None
    frr: float | None
    review_threshold: float | None
    review_far: float | None
    review_frr: float | None


@dataclass(frozen=True)
class BandTable:
    model_version: str
    source: str  # "model" or "site:<id>"
    rows: list[BandRow] = field(default_factory=list)
    target_far: float | None = None
    review_far: float | None = None
    problem: str = ""  # why nothing could be shown


def _manifest() -> dict[str, Any]:
    path = Path(settings.FACE_MODEL_PATH) / "manifest.json" if settings.FACE_MODEL_PATH else SHIPPED_MANIFEST
    return json.loads(path.read_text())


def thresholds_table() -> BandTable:
    """The thresholds in force for the configured model, per reference count, with the FAR and FRR
    expected at each (the manifest's calibration on LFW fold 8, or the site's own measurement)."""
    try:
        manifest = _manifest()
    except (OSError, ValueError) as exc:
        return BandTable(model_version="", source="", problem=f"the model's manifest cannot be read ({exc})")
    version = str(manifest.get("version", ""))
    operating = manifest.get("operating_point") or {}
    band = manifest.get("review_band") or {}
    expected, band_rows = operating.get("expected") or {}, band.get("per_references") or {}
    site = site_calibration_current(model_version=version)
    if site is not None and site.thresholds:
        figures = site.figures or {}
        site_review = site.review_thresholds or {}
        rows = []
        for key, value in sorted(site.thresholds.items(), key=lambda item: int(item[0])):
            proposed = (figures.get(key) or {}).get("proposed") or {}
            review = (figures.get(key) or {}).get("review_proposed") or {}
            review_threshold = site_review.get(key, (band.get("thresholds") or {}).get(key))
            rows.append(BandRow(
                references=int(key), threshold=float(value), far=proposed.get("far"), frr=proposed.get("frr"),
                review_threshold=None if review_threshold is None else min(float(review_threshold), float(value)),
                review_far=review.get("far") if key in site_review else None,
                review_frr=review.get("frr") if key in site_review else None,
            ))
        return BandTable(model_version=version, source=f"site:{site.pk}", rows=rows, target_far=site.target_far,
                         review_far=site.review_target_far if site_review else band.get("review_far"))
    rows = []
    for key, value in sorted((operating.get("thresholds") or {"1": manifest.get("threshold")}).items(),
                             key=lambda item: int(item[0])):
        admit, review = expected.get(key) or {}, band_rows.get(key) or {}
        review_threshold = (band.get("thresholds") or {}).get(key)
        rows.append(BandRow(
            references=int(key), threshold=float(value), far=admit.get("far"), frr=admit.get("frr"),
            review_threshold=None if review_threshold is None else min(float(review_threshold), float(value)),
            review_far=review.get("far"), review_frr=review.get("frr"),
        ))
    return BandTable(model_version=version, source=MODEL_SOURCE, rows=rows, target_far=operating.get("target_far"),
                     review_far=band.get("review_far"))
