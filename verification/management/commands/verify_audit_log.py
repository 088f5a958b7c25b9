"""python manage.py verify_audit_log [--csv FILE [--allow-gaps]]: walk the hash chain; exit 1 at the first broken link.

Without ``--csv`` the chain in the database, then its head (entries cut off the tail; with
``AUDIT_HMAC_KEY``, the head's MAC). With ``--csv`` an exported file on its own (the admin's "Export CSV"),
without the database; keyed entries need the same ``AUDIT_HMAC_KEY``.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from verification.audit import CsvUnreadable, audit_verify, audit_verify_csv


class Command(BaseCommand):
    help = "Verify the audit log's hash chain (or an exported CSV file) and report the first broken link."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--csv", metavar="FILE", help="Verify this exported CSV file instead of the database.")
        parser.add_argument(
            "--allow-gaps", action="store_true",
            help="With --csv: the file is a filtered export; check each row, and links where rows are consecutive.",
        )

    def handle(self, *args, csv: str | None, allow_gaps: bool, **options) -> None:
        if csv:
            try:
                with open(csv, newline="", encoding="utf-8") as handle:
                    checked, broken = audit_verify_csv(handle, allow_gaps=allow_gaps)
            except (OSError, CsvUnreadable) as exc:
                raise CommandError(f"cannot read {csv}: {exc}") from exc
            where = f" in {csv}"
        else:
            checked, broken = audit_verify()
            where = ""
        if broken is None:
            self.stdout.write(self.style.SUCCESS(f"OK: {checked} audit entries{where}, chain intact."))
            return
        self.stderr.write(
            self.style.ERROR(
                f"BROKEN at entry {broken.seq}{where}: {broken.problem} ({checked} entries verified before it)."
            )
        )
        raise SystemExit(1)
