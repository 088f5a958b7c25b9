# Issue 11, item 2: model names as people say them ("people", "check-ins", "reference photos") and the
# snapshot's aligned face stored on its check-in (CheckIn.probe_face, files under probe_faces/).

import verification.models.base
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('verification', '0017_doors_access'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='checkin',
            options={'ordering': ['-created_at'], 'permissions': [('view_snapshots', 'Can view check-in snapshots (biometric)'), ('review_checkin', 'Can admit or refuse check-ins in review (guard)')], 'verbose_name': 'check-in', 'verbose_name_plural': 'check-ins'},
        ),
        migrations.AlterModelOptions(
            name='person',
            options={'ordering': ['name'], 'permissions': [('erase_person', 'Can erase people (right to erasure)')], 'verbose_name_plural': 'people'},
        ),
        migrations.AlterModelOptions(
            name='referenceimage',
            options={'ordering': ['created_at'], 'permissions': [('view_reference_photos', 'Can view reference photos and aligned faces (biometric)')], 'verbose_name': 'reference photo'},
        ),
        migrations.AddField(
            model_name='checkin',
            name='probe_face',
            field=models.ImageField(blank=True, editable=False, upload_to=verification.models.base.probe_face_upload_to),
        ),
    ]
