"""Walking the audit chain on a schedule (beat, daily) or on request (an auditor in the admin).

Each walk is stored as an ``AuditCheck``; the newest one drives the admin's front-page banner. A broken
chain is an alert: logged at ERROR and posted to ``ALERT_WEBHOOK_URL`` (``alerts``). The log line and the
webhook name the head's seq and hash, so a copy kept outside the database shows if the chain shrank.
"""
from __future__ import annotations

import logging

from verification.audit import audit_verify
from verification.models import AuditChainHead, AuditCheck
from verification.services.alerts import alert_send

logger = logging.getLogger(__name__)


def audit_chain_check(*, source: str) -> AuditCheck:
    """Verify the chain now; record and, when broken, alert. Returns the stored check."""
    checked, broken = audit_verify()
    head = AuditChainHead.objects.filter(pk=1).first()
    check = AuditCheck(
        source=source[:32],
        checked=checked,
        broken_seq=broken.seq if broken else None,
        problem=broken.problem[:300] if broken else "",
        head_seq=head.seq if head else 0,
        head_hash=head.last_hash if head else "",
    )
    check.full_clean()
    check.save()
    if broken is None:
        logger.info("audit chain intact: %d entries, head %d %s", checked, check.head_seq, check.head_hash)
    else:
        alert_send(
            event="audit_chain_broken",
            message=f"Audit chain BROKEN at entry {broken.seq}: {broken.problem} ({checked} entries verified before it)",
            detail={"seq": broken.seq, "problem": broken.problem, "checked": checked,
                    "head_seq": check.head_seq, "head_hash": check.head_hash, "source": check.source},
        )
    return check
