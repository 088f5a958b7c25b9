"""python manage.py verify_audit_log: walk the hash chain; exit 1 at the first broken link."""
from django.core.management.base import BaseCommand

from verification.audit import audit_verify


class Command(BaseCommand):
    help = "Verify the audit log's hash chain and report the first broken link."

    def handle(self, *args, **options) -> None:
        checked, broken = audit_verify()
        if broken is None:
            self.stdout.write(self.style.SUCCESS(f"OK: {checked} audit entries, chain intact."))
            return
        self.stderr.write(
            self.style.ERROR(f"BROKEN at entry {broken.seq}: {broken.problem} ({checked} entries verified before it).")
        )
        raise SystemExit(1)
