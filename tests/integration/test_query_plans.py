"""Queries that run on every admin page view or sweep the whole table use an index on PostgreSQL.

The planner is told not to scan sequentially, so the plan names the index the query *can* use (on
the few test rows a sequential scan would otherwise always win).
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from verification.models import CheckIn

pytestmark = pytest.mark.integration


def _plan(queryset) -> str:
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
        return queryset.explain()


@pytest.mark.parametrize(
    "query",
    [
        # The dashboard's counts of today's check-ins (selectors.checkins_summary).
        lambda now: CheckIn.objects.filter(created_at__gte=now - timedelta(days=1), created_at__lt=now).order_by(),
        # The admin list's first page, newest first.
        lambda now: CheckIn.objects.order_by("-created_at")[:100],
        # The retention sweep: check-ins older than the snapshot retention period.
        lambda now: CheckIn.objects.filter(created_at__lt=now - timedelta(days=30)).exclude(snapshot="", probe_face=""),
    ],
    ids=["dashboard-day", "admin-newest-first", "retention-sweep"],
)
def test_checkin_time_window_queries_use_the_created_at_index(transactional_db, query) -> None:
    assert connection.vendor == "postgresql"
    assert "checkin_created_idx" in _plan(query(timezone.now()))
