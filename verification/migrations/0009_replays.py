"""Replays refused (issue 9, item 7): the snapshot's SHA-256 (indexed), the probe's embedding, the
reason ``replayed``. Existing rows get an empty digest and no embedding: they are never matched.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('verification', '0008_lockout_escalation'),
    ]

    operations = [
        migrations.AddField(
            model_name='checkin',
            name='probe_embedding',
            field=models.BinaryField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='checkin',
            name='snapshot_sha256',
            field=models.CharField(blank=True, default='', editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name='checkin',
            name='reason',
            field=models.CharField(blank=True, choices=[('', '-'), ('no_match', 'Face does not match'), ('no_face', 'No face found'), ('face_too_small', 'Face too small to verify'), ('multiple_faces', 'More than one face'), ('unknown_person', 'Unknown person'), ('inactive_person', 'Inactive or outside validity dates'), ('no_references', 'No usable reference photos'), ('references_stale', 'Reference photos not yet re-embedded by this model'), ('unreadable_image', 'Unreadable image'), ('locked_out', 'Locked out after repeated failures'), ('processing_error', 'Processing error'), ('snapshot_missing', 'Snapshot file missing'), ('device_revoked', 'Device revoked before the check-in was processed'), ('replayed', 'Replayed snapshot (seen before, or a near-duplicate of a recent probe)')], default='', max_length=32),
        ),
        migrations.AddIndex(
            model_name='checkin',
            index=models.Index(fields=['snapshot_sha256'], name='checkin_snapshot_sha256_idx'),
        ),
    ]
