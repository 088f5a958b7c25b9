"""Lockouts decided and counted under one lock, on one clock, escalating (issue 9, item 5).

LockoutSubject: the row per claimed person / device that checkin_decide locks. Lockout.level: the
n-th lockout in a row (existing rows were first lockouts). Indexes for counting refusals by
decided_at, the decision's clock.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('verification', '0007_device_revocation'),
    ]

    operations = [
        migrations.CreateModel(
            name='LockoutSubject',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('scope', models.CharField(choices=[('person', 'Claimed person'), ('device', 'Device')], max_length=8)),
                ('key', models.CharField(max_length=64)),
            ],
        ),
        migrations.AddField(
            model_name='lockout',
            name='level',
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.AddIndex(
            model_name='checkin',
            index=models.Index(fields=['claimed_external_id', 'decided_at'], name='checkin_claimed_decided_idx'),
        ),
        migrations.AddIndex(
            model_name='checkin',
            index=models.Index(fields=['device', 'decided_at'], name='checkin_device_decided_idx'),
        ),
        migrations.AddConstraint(
            model_name='lockoutsubject',
            constraint=models.UniqueConstraint(fields=('scope', 'key'), name='lockout_subject_unique'),
        ),
    ]
