"""``face_too_small``: a face was found but is smaller than the model verifies (``ml.align.MIN_FACE_PX``).

Only the choices of the two ``reason`` fields change (no schema change in the database).
"""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("verification", "0004_audit_append_only_trigger"),
    ]

    operations = [
        migrations.AlterField(
            model_name="referenceimage",
            name="reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "-"),
                    ("no_face", "No face found"),
                    ("face_too_small", "Face too small to verify"),
                    ("multiple_faces", "More than one face"),
                    ("unreadable_image", "Unreadable image"),
                    ("processing_error", "Processing error"),
                ],
                default="",
                editable=False,
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
