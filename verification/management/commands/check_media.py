"""python manage.py check_media [--delete]: files no row owns, rows whose file is missing."""
from django.conf import settings
from django.core.management.base import BaseCommand

from verification import services


class Command(BaseCommand):
    help = (
        "Report media files (snapshots/, references/, faces/) that no row owns and rows whose file is missing. "
        "With --delete, remove orphans older than the grace period (MEDIA_ORPHAN_GRACE_SECONDS)."
    )

    def add_arguments(self, parser) -> None:  # noqa: ANN001 - Django signature
        parser.add_argument("--delete", action="store_true", help="delete orphan files older than the grace period")
        parser.add_argument(
            "--grace-seconds", type=int, default=None,
            help=f"keep orphans younger than this (default MEDIA_ORPHAN_GRACE_SECONDS, {settings.MEDIA_ORPHAN_GRACE_SECONDS})",
        )

    def handle(self, *args, **options) -> None:
        if options["grace_seconds"] is not None and options["grace_seconds"] < 0:
            self.stderr.write("--grace-seconds must not be negative")
            raise SystemExit(2)
        report = services.media_check(delete=options["delete"], grace_seconds=options["grace_seconds"])
        self.stdout.write(str(report))
        for name in report.kept_in_grace:
            self.stdout.write(f"kept (younger than the grace period): {name}")
