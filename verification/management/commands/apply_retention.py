"""python manage.py apply_retention: delete biometric files past their retention period, say which."""
from django.core.management.base import BaseCommand

from verification import services


class Command(BaseCommand):
    help = (
        "Delete check-in snapshots older than RETENTION_SNAPSHOT_DAYS and rejected enrolment photos older "
        "than RETENTION_REJECTED_REFERENCE_DAYS; print what was deleted."
    )

    def handle(self, *args, **options) -> None:
        self.stdout.write(str(services.retention_apply()))
