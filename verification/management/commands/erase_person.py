"""python manage.py erase_person EXTERNAL_ID: erase a person's biometric data, pseudonymise the audit."""
import getpass

from django.core.management.base import BaseCommand, CommandError, CommandParser

from verification import selectors, services


class Command(BaseCommand):
    help = (
        "Erase a person: delete their reference photos, face crops, embeddings and check-in snapshots; "
        "pseudonymise their check-ins and audit entries; write an erasure receipt to the audit log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("external_id", help="The person's external ID (badge number).")
        parser.add_argument("--operator", default="", help="Who asked for the erasure (default: the OS user).")

    def handle(self, *args, external_id: str, operator: str, **options) -> None:
        person = selectors.person_by_external_id(external_id=external_id)
        if person is None:
            raise CommandError(f"No person with external ID {external_id!r}.")
        receipt = services.person_erase(person=person, operator=operator or f"cli:{getpass.getuser()}")
        detail = receipt.detail
        self.stdout.write(
            f"Erased person {detail['person_id']} as {receipt.person_external_id}: "
            f"{detail['references_deleted']} reference photo(s), {detail['files_deleted']} file(s) deleted; "
            f"{detail['checkins_pseudonymised']} check-in(s) and {detail['audit_entries_pseudonymised']} audit "
            f"entries pseudonymised; receipt is audit entry {receipt.seq}."
        )
