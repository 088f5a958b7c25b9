"""python manage.py sweep_checkins: re-queue check-ins (and reference photos) stuck too long, and refuse
``review_timeout`` the reviews no guard answered by their deadline (what beat does; for cron without beat)."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from verification import services


class Command(BaseCommand):
    help = ("Re-queue check-ins stuck in pending/processing (and references stuck pending) beyond a timeout; "
            "end overdue reviews as review_timeout.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            default=settings.CHECKIN_STUCK_AFTER_SECONDS,
            help="Seconds without progress before a row counts as stuck (default CHECKIN_STUCK_AFTER_SECONDS).",
        )

    def handle(self, *args, older_than: int, **options) -> None:
        if older_than < 0:
            raise CommandError("--older-than must be >= 0")
        result = services.checkins_sweep(older_than_seconds=older_than)
        expired = services.checkin_reviews_expire()
        self.stdout.write(
            f"re-queued {len(result['checkins'])} check-in(s) {result['checkins']} "
            f"and {len(result['references'])} reference(s) {result['references']}; "
            f"{len(expired)} overdue review(s) refused review_timeout {expired}"
        )
