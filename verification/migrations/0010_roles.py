"""Staff roles as groups, and their own permissions for biometric images, device tokens, unlocking,
erasure, the audit export and chain verification (issue 9, item 2).

The custom permissions are declared on the models (``Meta.permissions`` from ``verification.roles``);
Django creates permissions only after all migrations (``post_migrate``), so this migration creates them
itself before it gives each role's group exactly the permissions ``verification.roles.ROLES`` lists.
Reversing it deletes the four groups.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from verification import roles


def create_roles(apps, schema_editor):
    app_config = apps.get_app_config("verification")
    # Historical app configs have no models module; create_permissions skips such apps.
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    finally:
        app_config.models_module = None
    # missing_ok: ROLES is today's table; permissions added after this migration (0016's review_checkin)
    # do not exist yet on a fresh database. The migration that added them syncs the roles again, strictly.
    roles.groups_sync(group_model=apps.get_model("auth", "Group"), permission_model=apps.get_model("auth", "Permission"),
                      missing_ok=True)


def remove_roles(apps, schema_editor):
    roles.groups_remove(group_model=apps.get_model("auth", "Group"))


class Migration(migrations.Migration):

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('verification', '0009_replays'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='auditentry',
            options={'ordering': ['-seq'], 'permissions': [('export_auditentry', 'Can export the audit log'), ('verify_audit_chain', 'Can verify the audit chain')], 'verbose_name_plural': 'audit entries'},
        ),
        migrations.AlterModelOptions(
            name='checkin',
            options={'ordering': ['-created_at'], 'permissions': [('view_snapshots', 'Can view check-in snapshots (biometric)')]},
        ),
        migrations.AlterModelOptions(
            name='device',
            options={'ordering': ['name'], 'permissions': [('issue_device_token', 'Can issue device tokens'), ('revoke_device', 'Can revoke devices'), ('reinstate_device', 'Can reinstate revoked devices')]},
        ),
        migrations.AlterModelOptions(
            name='lockout',
            options={'ordering': ['-created_at'], 'permissions': [('unlock_lockout', 'Can unlock lockouts')]},
        ),
        migrations.AlterModelOptions(
            name='person',
            options={'ordering': ['name'], 'permissions': [('erase_person', 'Can erase people (right to erasure)')]},
        ),
        migrations.AlterModelOptions(
            name='referenceimage',
            options={'ordering': ['created_at'], 'permissions': [('view_reference_photos', 'Can view reference photos and aligned faces (biometric)')]},
        ),
        migrations.RunPython(create_roles, remove_roles),
    ]
