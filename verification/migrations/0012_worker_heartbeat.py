"""Worker heartbeats: one row per Celery pool process, read by /readyz and /metrics (issue 11, item 3)."""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("verification", "0011_site_calibration"),
    ]

    operations = [
        migrations.CreateModel(
            name="WorkerHeartbeat",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("worker", models.CharField(max_length=200, unique=True)),
                ("model_version", models.CharField(blank=True, default="", max_length=64)),
                ("model_error", models.CharField(blank=True, default="", max_length=500)),
                ("beat_at", models.DateTimeField()),
            ],
            options={
                "ordering": ["worker"],
                "indexes": [models.Index(fields=["beat_at"], name="worker_heartbeat_beat_idx")],
            },
        ),
    ]
