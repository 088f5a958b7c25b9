"""A worker noting its model version never waits for a busy audit chain head (real PostgreSQL row locks).

Moved here from tests/security/test_audit_admin_changes.py: row locks held by another connection need
PostgreSQL, which the integration tests always have (they fail, never skip, without it).
"""

from __future__ import annotations

import pytest
from django.db import connection

from verification import services
from verification.models import AuditChainHead, AuditEntry

pytestmark = pytest.mark.integration


@pytest.mark.django_db(transaction=True)
def test_a_worker_noting_its_model_version_never_waits_for_a_busy_chain_head(fake_model, monkeypatch):
    """Every worker start runs ``reembed_stale_task``, which notes the model version. With the chain head
    held by another transaction it must neither wait (stalling the pool process until its time limit)
    nor stop the re-embedding sweep; the next sweep notes the version."""
    import psycopg

    from verification import tasks
    from verification.audit import GENESIS_HASH, AuditHeadBusy
    from verification.services.model_changes import model_change_record

    AuditChainHead.objects.get_or_create(pk=1, defaults={"seq": 0, "last_hash": GENESIS_HASH})
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '5s'")  # a regression fails here instead of hanging
    db = connection.settings_dict
    holder = psycopg.connect(
        dbname=db["NAME"], user=db["USER"] or None, password=db["PASSWORD"] or None,
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, autocommit=False,
    )
    swept: list[int] = []
    monkeypatch.setattr(services, "references_reembed_sweep", lambda *, batch_size: swept.append(batch_size) or [])
    try:
        holder.execute("SELECT seq FROM verification_auditchainhead WHERE id = 1 FOR UPDATE")
        with pytest.raises(AuditHeadBusy):
            model_change_record(wait=False)
        assert tasks.reembed_stale_task.apply().get() == []
        assert swept  # the sweep went ahead
        assert not AuditEntry.objects.filter(kind="model_changed").exists()
    finally:
        holder.rollback()
        holder.close()
    tasks.reembed_stale_task.apply().get()  # the next sweep, head free: noted once
    assert list(AuditEntry.objects.filter(kind="model_changed").values_list("model_version", flat=True)) == ["fake-1"]
