"""Admin changes in the audit chain (issue 9, item 3): who did it (``actor``), how each entry was hashed
(``hash_scheme``; every existing row is the original plain SHA-256 without the actor, ``sha256-v1``, and
keeps verifying), a MAC on the chain head for ``AUDIT_HMAC_KEY``, the new entry kinds, one
``model_changed`` per model version, and ``AuditCheck`` (each walk of the chain, for the admin banner).
"""
from django.db import migrations, models

KINDS = [
    ("decision", "Decision"),
    ("failure", "Processing failed"),
    ("lockout", "Lockout"),
    ("unlock", "Unlock"),
    ("erasure", "Erasure receipt"),
    ("device_revoked", "Device revoked"),
    ("device_reinstated", "Device reinstated (new token)"),
    ("calibration", "Site thresholds applied"),
    ("person_created", "Person created"),
    ("person_changed", "Person changed"),
    ("person_deleted", "Person deleted"),
    ("reference_added", "Reference photo added"),
    ("reference_deleted", "Reference photo deleted"),
    ("device_created", "Device created (first token)"),
    ("device_token_issued", "Device token issued"),
    ("model_changed", "Face model version first loaded"),
]


class Migration(migrations.Migration):
    dependencies = [("verification", "0012_worker_heartbeat")]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="actor",
            field=models.CharField(blank=True, default="", max_length=150),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="hash_scheme",
            field=models.CharField(default="sha256-v1", max_length=16),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="kind",
            field=models.CharField(choices=KINDS, max_length=32),
        ),
        migrations.AddConstraint(
            model_name="auditentry",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "model_changed")),
                fields=("model_version",),
                name="audit_one_model_changed_per_version",
            ),
        ),
        migrations.AddField(
            model_name="auditchainhead",
            name="mac",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.CreateModel(
            name="AuditCheck",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("source", models.CharField(help_text="beat, admin:<user>, ...", max_length=32)),
                ("checked", models.PositiveBigIntegerField(default=0, help_text="Entries verified before the break, or all.")),
                ("broken_seq", models.PositiveBigIntegerField(blank=True, null=True)),
                ("problem", models.CharField(blank=True, default="", max_length=300)),
                ("head_seq", models.PositiveBigIntegerField(default=0)),
                ("head_hash", models.CharField(blank=True, default="", max_length=64)),
            ],
            options={
                "ordering": ["-created_at"],
                "indexes": [models.Index(fields=["created_at"], name="audit_check_created_idx")],
            },
        ),
    ]
