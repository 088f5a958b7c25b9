"""python manage.py reembed_references: re-embed reference photos after the model changed.

Workers do this by themselves (at start-up and on the beat schedule); the command is for operators who
want it now, or want to see first what is stale (``--dry-run``).
"""
from django.core.management.base import BaseCommand, CommandError, CommandParser

from verification import inference, selectors, services
from verification.errors import ModelUnavailable


class Command(BaseCommand):
    help = "Queue re-embedding of every reference photo not embedded by the configured model version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model-version", help="Target version (default: the configured model's manifest).")
        parser.add_argument("--dry-run", action="store_true", help="Only say how many references are stale.")

    def handle(self, *args, model_version: str | None, dry_run: bool, **options) -> None:
        if model_version is None:
            try:
                model_version = inference.configured_model_version()
            except ModelUnavailable as exc:
                raise CommandError(str(exc)) from exc
        current, total = selectors.references_progress(model_version=model_version)
        self.stdout.write(f"{current} of {total} ready reference(s) are embedded by model {model_version}")
        if dry_run:
            stale = selectors.references_stale(model_version=model_version).count()
            self.stdout.write(f"dry run: {stale} reference(s) would be queued for re-embedding; nothing changed")
            return
        queued = services.references_requeue_stale(model_version=model_version)
        self.stdout.write(f"queued {len(queued)} reference(s) for re-embedding with model {model_version}")
