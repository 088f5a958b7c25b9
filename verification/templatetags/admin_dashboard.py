"""``{% admin_dashboard %}``: the dashboard on the admin's front page (``verification/admin/dashboard.py``)."""
from __future__ import annotations

from django import template

from verification.admin.dashboard import dashboard_for

register = template.Library()


@register.inclusion_tag("admin/verification/dashboard.html", takes_context=True)
def admin_dashboard(context: template.Context) -> dict:
    return {"dashboard": dashboard_for(context["request"])}
