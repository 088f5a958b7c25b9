"""Append-only audit log at the database level (PostgreSQL), not only in the ORM and the admin.

A trigger refuses DELETE and UPDATE on ``verification_auditentry`` for every client (psql, another
application, a bug that bypasses the ORM), with one exception: the erasure of a person
(``verification.audit.audit_pseudonymise``), which may blank the name and salt, replace the external
ID with an ``erased-`` pseudonym and set ``person_erased_at`` once, changing nothing else. Whoever can
drop the trigger (the table owner) can still edit rows; the hash chain (``verify_audit_log``) detects
that. SQLite (laptops, unit tests) gets no trigger: Django's test flush empties tables with DELETE.
"""
from django.db import migrations

ERASABLE = "ARRAY['person_external_id', 'person_name', 'person_salt', 'person_erased_at']"

CREATE = f"""
CREATE OR REPLACE FUNCTION verification_auditentry_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND OLD.person_erased_at IS NULL
        AND NEW.person_erased_at IS NOT NULL
        AND NEW.person_external_id LIKE 'erased-%'
        AND NEW.person_name = ''
        AND NEW.person_salt = ''
        AND (to_jsonb(NEW) - {ERASABLE}) = (to_jsonb(OLD) - {ERASABLE})
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'verification_auditentry is append-only: % refused (seq %)', TG_OP, OLD.seq
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER verification_auditentry_append_only
    BEFORE UPDATE OR DELETE ON verification_auditentry
    FOR EACH ROW EXECUTE FUNCTION verification_auditentry_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS verification_auditentry_append_only ON verification_auditentry;
DROP FUNCTION IF EXISTS verification_auditentry_append_only();
"""


def create_trigger(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("verification", "0003_lockout")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
