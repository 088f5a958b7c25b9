"""python manage.py import_people people.csv [--photos photos.zip] [--commit] [--update-existing]

The admin's "Import from CSV" from the command line (``services/people_import.py``): a dry run unless
``--commit``; the same report, one line per row with a problem. Exit status 1 when anything was refused.
"""
import getpass
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from verification.services.people_import import people_import


class Command(BaseCommand):
    help = "Import people (and their photos from a zip) from a CSV file; a dry run unless --commit."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", type=Path, help="The CSV file (columns: see docs/ADMIN.md).")
        parser.add_argument("--photos", type=Path, help="A zip of the photos the CSV names.")
        parser.add_argument("--commit", action="store_true", help="Write (only if no row has a problem).")
        parser.add_argument("--update-existing", action="store_true",
                            help="Rows of people already enrolled change them instead of being errors.")
        parser.add_argument("--operator", default="", help="Who imports, for the audit log (default: the OS user).")

    def handle(self, *args, csv: Path, photos: Path | None, commit: bool, update_existing: bool, operator: str,
               **options) -> None:
        try:
            csv_handle = csv.open("rb")
            photos_handle = photos.open("rb") if photos else None
        except OSError as exc:
            raise CommandError(str(exc)) from exc
        with csv_handle, (photos_handle or _Nothing()):
            report = people_import(
                csv_file=csv_handle, photos_zip=photos_handle, dry_run=not commit, update_existing=update_existing,
                operator=operator or f"cli:{getpass.getuser()}", csv_name=csv.name,
            )
        for note in report.notes:
            self.stdout.write(note)
        for row in report.rows:
            for error in row.errors:
                self.stdout.write(f"line {row.line} ({row.external_id or 'no external_id'}): {error}")
        self.stdout.write(report.summary())
        if not report.ok:
            raise SystemExit(1)


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
