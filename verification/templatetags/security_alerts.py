"""Template tags for the admin's security banners (issue 9, item 5: operators see every lockout)."""
from __future__ import annotations

from django import template
from django.db.models import QuerySet

from verification import selectors
from verification.models import Lockout

register = template.Library()


@register.simple_tag
def lockouts_in_force() -> QuerySet[Lockout]:
    """The lockouts in force now, newest first."""
    return selectors.lockouts_in_force()
