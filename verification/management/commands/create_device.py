"""python manage.py create_device NAME [--signing]: prints the new device's token once (stored hashed).

With ``--signing`` the device is also given a request-signing secret (issue 9, item 7), printed once on
the line after the token: every request of the device must then be signed with it. With ``--door NAME``
it is placed at that door (issue 11, item 1: its check-ins then need access to the door's zone).
"""
import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from verification import services
from verification.models import Door
from verification.services import access_rules


class Command(BaseCommand):
    help = "Create a door device and print its API token (shown once; only a hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Unique device name, e.g. front-door.")
        parser.add_argument(
            "--signing",
            action="store_true",
            help="Also issue a request-signing secret (printed once after the token); the device must sign requests.",
        )
        parser.add_argument("--door", help="Place the device at this door (its name, as in the admin).")

    def handle(self, *args, name: str, signing: bool = False, door: str | None = None, **options) -> None:
        operator = f"cli:{getpass.getuser()}"
        at_door = Door.objects.filter(name=door).first() if door else None
        if door and at_door is None:
            raise CommandError(f"No door named {door!r} (the admin's Doors list has their names).")
        try:
            with transaction.atomic():
                device, token = services.device_create(name=name, operator=operator)
                if at_door is not None:
                    access_rules.device_door_set(device=device, door=at_door, operator=operator)
                secret = services.device_issue_signing_secret(device=device, operator=operator) if signing else ""
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        where = f" at door {at_door.name!r}" if at_door else ""
        self.stderr.write(f"Created device {device.name!r} (id {device.pk}){where}. Its token, shown only now:")
        self.stdout.write(token)
        if secret:
            self.stderr.write("Its request-signing secret, shown only now (every request must be signed with it):")
            self.stdout.write(secret)
