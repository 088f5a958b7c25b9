"""Doors, zones, access groups, weekly windows and holidays (issue 11, item 1): the models, the device's
door, the reasons ``not_authorized_here`` / ``outside_schedule``, the audit kinds of access-rule changes,
and the roles' rights on the new models (the operator manages them, the security officer views them).

Like 0010 and 0016, the permissions of the new models are created here (``post_migrate`` runs only after
every migration) and each role's group is given exactly what ``verification.roles.ROLES`` lists.
Reversing it leaves the groups as they are (their rights on the removed models go with the models).
"""

import django.db.models.deletion
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

from verification import roles


def sync_roles(apps, schema_editor):
    app_config = apps.get_app_config("verification")
    # Historical app configs have no models module; create_permissions skips such apps.
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    finally:
        app_config.models_module = None
    roles.groups_sync(group_model=apps.get_model("auth", "Group"), permission_model=apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):

    dependencies = [
        ('verification', '0016_review_band'),
    ]

    operations = [
        migrations.CreateModel(
            name='AccessGroup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('name', models.CharField(max_length=100, unique=True)),
                ('description', models.TextField(blank=True, default='')),
            ],
            options={
                'verbose_name': 'access group',
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='Door',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('name', models.CharField(max_length=100, unique=True)),
                ('description', models.TextField(blank=True, default='')),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.AlterField(
            model_name='auditentry',
            name='kind',
            field=models.CharField(choices=[('decision', 'Decision'), ('failure', 'Processing failed'), ('review', 'Sent to a guard (score in the review band)'), ('lockout', 'Lockout'), ('unlock', 'Unlock'), ('erasure', 'Erasure receipt'), ('device_revoked', 'Device revoked'), ('device_reinstated', 'Device reinstated (new token)'), ('calibration', 'Site thresholds applied'), ('reference_accepted', 'Inconsistent reference photo accepted by an operator'), ('person_created', 'Person created'), ('person_changed', 'Person changed'), ('person_deleted', 'Person deleted'), ('reference_added', 'Reference photo added'), ('reference_deleted', 'Reference photo deleted'), ('device_created', 'Device created (first token)'), ('device_token_issued', 'Device token issued'), ('device_signing_issued', 'Device request-signing secret issued'), ('device_signing_removed', 'Device request-signing secret removed'), ('model_changed', 'Face model version first loaded'), ('zone_created', 'Zone created'), ('zone_changed', 'Zone changed'), ('zone_deleted', 'Zone deleted'), ('door_created', 'Door created'), ('door_changed', 'Door changed'), ('door_deleted', 'Door deleted'), ('device_door_changed', 'Device moved to another door'), ('access_group_created', 'Access group created'), ('access_group_changed', 'Access group changed (zones, windows)'), ('access_group_deleted', 'Access group deleted'), ('access_member_added', 'Person added to an access group'), ('access_member_removed', 'Person removed from an access group'), ('holiday_added', 'Holiday added'), ('holiday_changed', 'Holiday changed'), ('holiday_removed', 'Holiday removed')], max_length=32),
        ),
        migrations.AlterField(
            model_name='checkin',
            name='reason',
            field=models.CharField(blank=True, choices=[('', '-'), ('no_match', 'Face does not match'), ('no_face', 'No face found'), ('face_too_small', 'Face too small to verify'), ('multiple_faces', 'More than one face'), ('unknown_person', 'Unknown person'), ('inactive_person', 'Inactive or outside validity dates'), ('no_references', 'No usable reference photos'), ('references_stale', 'Reference photos not yet re-embedded by this model'), ('unreadable_image', 'Unreadable image'), ('locked_out', 'Locked out after repeated failures'), ('processing_error', 'Processing error'), ('snapshot_missing', 'Snapshot file missing'), ('device_revoked', 'Device revoked before the check-in was processed'), ('replayed', 'Replayed snapshot (seen before, or a near-duplicate of a recent probe)'), ('guard_refused', 'Refused by a guard (score in the review band)'), ('review_timeout', 'No guard answered the review in time'), ('not_authorized_here', "No access group grants this door's zone"), ('outside_schedule', "Outside the access groups' time windows")], default='', max_length=32),
        ),
        migrations.CreateModel(
            name='AccessGroupMembership',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('group', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='verification.accessgroup')),
                ('person', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='access_memberships', to='verification.person')),
            ],
            options={
                'verbose_name': 'access group membership',
                'ordering': ['group__name'],
            },
        ),
        migrations.AddField(
            model_name='accessgroup',
            name='members',
            field=models.ManyToManyField(blank=True, related_name='access_groups', through='verification.AccessGroupMembership', to='verification.person'),
        ),
        migrations.CreateModel(
            name='AccessWindow',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('day', models.PositiveSmallIntegerField(choices=[(0, 'Monday'), (1, 'Tuesday'), (2, 'Wednesday'), (3, 'Thursday'), (4, 'Friday'), (5, 'Saturday'), (6, 'Sunday'), (7, 'Holidays')])),
                ('start', models.TimeField()),
                ('end', models.TimeField(help_text='At or before the start: ends the next day (00:00-00:00 is the whole day).')),
                ('group', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='windows', to='verification.accessgroup')),
            ],
            options={
                'verbose_name': 'access window',
                'ordering': ['group', 'day', 'start'],
            },
        ),
        migrations.AddField(
            model_name='device',
            name='door',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='devices', to='verification.door'),
        ),
        migrations.CreateModel(
            name='Holiday',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('date', models.DateField()),
                ('name', models.CharField(max_length=100)),
                ('group', models.ForeignKey(blank=True, help_text='Empty: a site-wide holiday, for every group.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='holidays', to='verification.accessgroup')),
            ],
            options={
                'ordering': ['date', 'name'],
            },
        ),
        migrations.CreateModel(
            name='Zone',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('name', models.CharField(max_length=100, unique=True)),
                ('description', models.TextField(blank=True, default='')),
            ],
            options={
                'ordering': ['name'],
                'constraints': [models.CheckConstraint(condition=models.Q(('name', ''), _negated=True), name='zone_name_not_blank')],
            },
        ),
        migrations.AddField(
            model_name='door',
            name='zone',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='doors', to='verification.zone'),
        ),
        migrations.AddField(
            model_name='accessgroup',
            name='zones',
            field=models.ManyToManyField(blank=True, related_name='access_groups', to='verification.zone'),
        ),
        migrations.AddConstraint(
            model_name='accessgroupmembership',
            constraint=models.UniqueConstraint(fields=('group', 'person'), name='access_membership_unique'),
        ),
        migrations.AddConstraint(
            model_name='accesswindow',
            constraint=models.CheckConstraint(condition=models.Q(('day__gte', 0), ('day__lte', 7)), name='access_window_day_valid'),
        ),
        migrations.AddConstraint(
            model_name='accesswindow',
            constraint=models.UniqueConstraint(fields=('group', 'day', 'start', 'end'), name='access_window_unique'),
        ),
        migrations.AddConstraint(
            model_name='holiday',
            constraint=models.UniqueConstraint(condition=models.Q(('group__isnull', False)), fields=('date', 'group'), name='holiday_unique_per_group', violation_error_message='This group already has a holiday on that date.'),
        ),
        migrations.AddConstraint(
            model_name='holiday',
            constraint=models.UniqueConstraint(condition=models.Q(('group__isnull', True)), fields=('date',), name='holiday_unique_site_wide', violation_error_message='There is already a site-wide holiday on that date.'),
        ),
        migrations.AddConstraint(
            model_name='holiday',
            constraint=models.CheckConstraint(condition=models.Q(('name', ''), _negated=True), name='holiday_name_not_blank'),
        ),
        migrations.AddConstraint(
            model_name='door',
            constraint=models.CheckConstraint(condition=models.Q(('name', ''), _negated=True), name='door_name_not_blank'),
        ),
        migrations.AddConstraint(
            model_name='accessgroup',
            constraint=models.CheckConstraint(condition=models.Q(('name', ''), _negated=True), name='access_group_name_not_blank'),
        ),
        migrations.RunPython(sync_roles, migrations.RunPython.noop),
    ]
