"""The face model in use is part of the audit trail: each version a worker loads is noted once.

The decision threshold comes from the model's manifest (and a site's own calibration, audited by
``calibration``), so a new model version is the change of model and of threshold. Every worker process
calls ``model_change_record`` after loading the model; only the first one to load a version appends
``model_changed`` (checked under the chain head's lock; a unique constraint backs it up). Going back to
a version noted before appends nothing: each decision's entry names its model version anyway.

The note is not one a decision waits for, and no decision should wait for it: workers call it with
``wait=False``, so a chain head held by another transaction (a burst of decisions, a long admin change)
makes it return at once (``AuditHeadBusy``) instead of stalling the worker process until its task time
limit; the next re-embedding sweep (beat, ``REEMBED_SWEEP_INTERVAL_SECONDS``) tries again.
"""
from __future__ import annotations

from django.db import transaction

from verification.audit import SYSTEM_ACTOR, audit_append, audit_head_lock
from verification.models import AuditEntry


@transaction.atomic
def model_change_record(*, info=None, wait: bool = True) -> AuditEntry | None:  # noqa: ANN001 - inference.ModelInfo
    """Worker: append ``model_changed`` for the loaded model's version unless one exists; return it or None.

    ``wait=False``: raise ``AuditHeadBusy`` (nothing appended) if another transaction holds the chain head.
    """
    if info is None:
        from verification import inference

        info = inference.model_info()
    audit_head_lock(wait=wait)
    if AuditEntry.objects.filter(kind=AuditEntry.Kind.MODEL_CHANGED, model_version=info.version).exists():
        return None
    previous = (
        AuditEntry.objects.filter(kind=AuditEntry.Kind.MODEL_CHANGED).order_by("-seq").values_list("model_version", flat=True).first()
    )
    return audit_append(
        kind=AuditEntry.Kind.MODEL_CHANGED,
        actor=SYSTEM_ACTOR,
        model_version=info.version,
        threshold=info.threshold,
        detail={
            "previous_version": previous or "",
            "thresholds": {str(count): float(value) for count, value in info.thresholds},
            "decision_rule": info.rule,
        },
    )
