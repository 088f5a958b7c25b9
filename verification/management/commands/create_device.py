"""python manage.py create_device NAME: prints the new device's token once (stored hashed)."""
import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from verification import services


class Command(BaseCommand):
    help = "Create a door device and print its API token (shown once; only a hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Unique device name, e.g. front-door.")

    def handle(self, *args, name: str, **options) -> None:
        try:
            device, token = services.device_create(name=name, operator=f"cli:{getpass.getuser()}")
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stderr.write(f"Created device {device.name!r} (id {device.pk}). Its token, shown only now:")
        self.stdout.write(token)
