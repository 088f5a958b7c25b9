"""Template tags for the admin's security banners: every lockout in force (issue 9, item 5) and a broken
audit chain (issue 9, item 3)."""
from __future__ import annotations

from django import template
from django.db.models import QuerySet

from verification import selectors
from verification.models import AuditCheck, Lockout

register = template.Library()


@register.simple_tag
def lockouts_in_force() -> QuerySet[Lockout]:
    """The lockouts in force now, newest first."""
    return selectors.lockouts_in_force()


@register.simple_tag
def audit_chain_broken() -> AuditCheck | None:
    """The newest audit-chain check if it found the chain broken, else None."""
    check = selectors.audit_check_latest()
    return check if check is not None and not check.ok else None
