"""python manage.py reembed_references: re-embed reference photos after the model changed."""
from django.core.management.base import BaseCommand, CommandError, CommandParser

from verification import inference, services
from verification.errors import ModelUnavailable


class Command(BaseCommand):
    help = "Queue re-embedding of every reference photo not embedded by the configured model version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model-version", help="Target version (default: the configured model's manifest).")

    def handle(self, *args, model_version: str | None, **options) -> None:
        if model_version is None:
            try:
                model_version = inference.configured_model_version()
            except ModelUnavailable as exc:
                raise CommandError(str(exc)) from exc
        queued = services.references_requeue_stale(model_version=model_version)
        self.stdout.write(f"queued {len(queued)} reference(s) for re-embedding with model {model_version}")
