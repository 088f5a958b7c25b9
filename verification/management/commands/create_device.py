"""python manage.py create_device NAME [--signing]: prints the new device's token once (stored hashed).

With ``--signing`` the device is also given a request-signing secret (issue 9, item 7), printed once on
the line after the token: every request of the device must then be signed with it.
"""
import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from verification import services


class Command(BaseCommand):
    help = "Create a door device and print its API token (shown once; only a hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Unique device name, e.g. front-door.")
        parser.add_argument(
            "--signing",
            action="store_true",
            help="Also issue a request-signing secret (printed once after the token); the device must sign requests.",
        )

    def handle(self, *args, name: str, signing: bool = False, **options) -> None:
        operator = f"cli:{getpass.getuser()}"
        try:
            with transaction.atomic():
                device, token = services.device_create(name=name, operator=operator)
                secret = services.device_issue_signing_secret(device=device, operator=operator) if signing else ""
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stderr.write(f"Created device {device.name!r} (id {device.pk}). Its token, shown only now:")
        self.stdout.write(token)
        if secret:
            self.stderr.write("Its request-signing secret, shown only now (every request must be signed with it):")
            self.stdout.write(secret)
