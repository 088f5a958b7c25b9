"""Re-embedding after a model change: the sweep's claim column, its index, and ``references_stale``.

``references_stale`` is a new choice of ``CheckIn.reason`` (no schema change in the database).
"""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("verification", "0005_face_too_small_reason"),
    ]

    operations = [
        migrations.AddField(
            model_name="referenceimage",
            name="reembed_queued_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name="referenceimage",
            index=models.Index(fields=["status", "model_version"], name="ref_status_version_idx"),
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
                ],
                default="",
                max_length=32,
            ),
        ),
    ]
