"""Device revocation (issue 9, item 4): when each token was issued, a ``device_reinstated`` audit kind,
and the ``device_revoked`` refusal reason.

- ``Device.token_issued_at``: ``DEVICE_TOKEN_MAX_AGE_DAYS`` counts from it. Existing devices get their
  ``updated_at``, the last time a token was issued to them (or, for a revoked one, when it was revoked).
- ``AuditEntry.kind`` grows to 32 characters for ``device_reinstated`` (a wider varchar: no row is
  rewritten, the append-only trigger is not involved).
- ``device_revoked`` is a new choice of ``CheckIn.reason`` (no schema change in the database).
"""
from django.db import migrations, models
from django.db.models import F


def backfill_token_issued_at(apps, schema_editor) -> None:
    Device = apps.get_model("verification", "Device")
    Device.objects.filter(token_issued_at__isnull=True).update(token_issued_at=F("updated_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("verification", "0006_reembed_references"),
    ]

    operations = [
        migrations.AddField(
            model_name="device",
            name="token_issued_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(backfill_token_issued_at, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditentry",
            name="kind",
            field=models.CharField(
                choices=[
                    ("decision", "Decision"),
                    ("failure", "Processing failed"),
                    ("lockout", "Lockout"),
                    ("unlock", "Unlock"),
                    ("erasure", "Erasure receipt"),
                    ("device_revoked", "Device revoked"),
                    ("device_reinstated", "Device reinstated (new token)"),
                ],
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="checkin",
            name="reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "-"),
                    ("no_match", "Face does not match"),
                    ("no_face", "No face found"),
                    ("face_too_small", "Face too small to verify"),
                    ("multiple_faces", "More than one face"),
                    ("unknown_person", "Unknown person"),
                    ("inactive_person", "Inactive or outside validity dates"),
                    ("no_references", "No usable reference photos"),
                    ("references_stale", "Reference photos not yet re-embedded by this model"),
                    ("unreadable_image", "Unreadable image"),
                    ("locked_out", "Locked out after repeated failures"),
                    ("processing_error", "Processing error"),
                    ("snapshot_missing", "Snapshot file missing"),
                    ("device_revoked", "Device revoked before the check-in was processed"),
                ],
                default="",
                max_length=32,
            ),
        ),
    ]
