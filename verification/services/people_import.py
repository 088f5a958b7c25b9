"""Bulk import of people from a CSV file, with their reference photos from a zip (issue 11, item 2).

The file (UTF-8, comma, semicolon or tab separated, one header row; column names are case-insensitive):

=============== ======== ================================================================================
column          required what
=============== ======== ================================================================================
``external_id`` yes      badge number or other ID the door device sends (1-64 characters, unique)
``name``        yes      the person's name (1-200 characters)
``is_active``   no       yes/no, true/false, 1/0, active/inactive; empty means yes
``valid_from``  no       ``2027-01-31`` (the start of that day, site time) or ``2027-01-31 08:00`` (site
                         time; an offset such as ``+01:00`` is honoured); empty means no start
``valid_until`` no       the same; a date alone means *through* that day (valid until the next midnight)
``photos``      no       file names in the zip, separated by ``;``; empty: the zip's files named
                         ``<external_id>.jpg`` (any image suffix) or inside a folder ``<external_id>/``
=============== ======== ================================================================================

Other columns are reported and ignored (an HR export may carry many).

Two runs, one validation. Both read every row and every photo it names (each photo decoded within
``UPLOAD_MAX_BYTES`` / ``IMAGE_MAX_PIXELS``, as an upload in the admin), and report per row what would
happen and every problem, each naming its line and, for photos, its file.

- The **dry run** writes nothing: no person, no photo, no file, no audit entry.
- The **real run** validates the same way first and writes nothing at all if any row has a problem
  (the file is fixed and imported again; no half-imported file to clean up). When every row is valid,
  each person is written with their photos in a transaction of their own (``person_save`` and
  ``reference_add``: audited, actor the operator, ``source`` naming the file and line), so a long import
  never holds the audit chain's lock for more than one person and the doors' decisions go on meanwhile.
  Should a write still fail (the database went away, someone enrolled the same ID a moment ago), the
  import stops there and the report says which rows were written.

The face check of each new photo runs in the worker afterwards, as for an upload in the admin; the
report links to the people whose photos are still in it.

Rows for external IDs already enrolled are errors, unless ``update_existing``: then the row's columns
replace that person's values (audited field by field) and its photos are added.
"""
from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import PurePosixPath
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import DatabaseError, transaction
from django.utils import timezone

from verification.errors import InvalidImage
from verification.images import SUFFIX_CONTENT_TYPES, validate_image
from verification.models import Person
from verification.services.enrolment import person_save, reference_add

COLUMNS = ("external_id", "name", "is_active", "valid_from", "valid_until", "photos")
REQUIRED_COLUMNS = ("external_id", "name")
MAX_CSV_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_BYTES = 1024 * 1024 * 1024
PHOTO_SEPARATOR = ";"
TRUE_WORDS = {"1", "yes", "y", "true", "t", "active", "on"}
FALSE_WORDS = {"0", "no", "n", "false", "f", "inactive", "off"}

EXAMPLE_CSV = (
    "external_id,name,is_active,valid_from,valid_until,photos\n"
    "B-1001,Ada Lovelace,yes,2027-01-01,2027-12-31,ada-1.jpg;ada-2.jpg\n"
    "B-1002,Grace Hopper,yes,,,\n"
    "C-0042,Alan Turing (contractor),yes,2027-03-01 08:00,2027-03-31,C-0042/front.png\n"
)


class ImportUnreadable(Exception):
    """The CSV or the zip cannot be read at all (not UTF-8, no header, not a zip, too big)."""


@dataclass
class RowReport:
    line: int
    external_id: str
    name: str
    action: str = ""  # "create", "update" (or "" when the row has errors)
    photos: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    written: bool = False
    person_id: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class ImportReport:
    csv_name: str
    dry_run: bool
    rows: list[RowReport] = field(default_factory=list)
    # Problems with the file as a whole (unreadable, a required column missing): nothing imported.
    errors: list[str] = field(default_factory=list)
    # Not problems, worth knowing: ignored columns, photos in the zip that no row used.
    notes: list[str] = field(default_factory=list)
    written: bool = False
    stopped_at_line: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and all(row.ok for row in self.rows)

    @property
    def rows_with_errors(self) -> int:
        return sum(1 for row in self.rows if not row.ok)

    @property
    def to_create(self) -> int:
        return sum(1 for row in self.rows if row.ok and row.action == "create")

    @property
    def to_update(self) -> int:
        return sum(1 for row in self.rows if row.ok and row.action == "update")

    @property
    def photos(self) -> int:
        return sum(len(row.photos) for row in self.rows if row.ok)

    @property
    def rows_written(self) -> int:
        return sum(1 for row in self.rows if row.written)

    def summary(self) -> str:
        if self.errors:
            return "Nothing imported: " + " ".join(self.errors)
        if self.stopped_at_line is not None:
            return (f"Stopped at line {self.stopped_at_line}: {self.rows_written} of {len(self.rows)} row(s) were "
                    "written before it (see below).")
        counts = (f"{len(self.rows)} row(s): {self.to_create} to create, {self.to_update} to update, "
                  f"{self.photos} photo(s)")
        if not self.ok:
            return f"{counts}; {self.rows_with_errors} row(s) with problems, so nothing was imported."
        if self.dry_run:
            return f"Dry run, nothing written. {counts}; no problems found."
        return (f"Imported {self.rows_written} row(s): {self.to_create} created, {self.to_update} updated, "
                f"{self.photos} photo(s) queued for the face check.")


@dataclass
class _Row:
    report: RowReport
    person: Person
    photo_files: list[tuple[str, bytes]]


def people_import(
    *,
    csv_file: IO[bytes],
    photos_zip: IO[bytes] | None = None,
    dry_run: bool = True,
    update_existing: bool = False,
    operator: str = "",
    csv_name: str = "",
) -> ImportReport:
    """Validate (and, unless ``dry_run``, import) the people in ``csv_file``; see the module docstring."""
    csv_name = PurePosixPath(csv_name or getattr(csv_file, "name", "") or "people.csv").name
    report = ImportReport(csv_name=csv_name, dry_run=dry_run)
    try:
        header, records = _read_csv(csv_file, report)
        archive = _open_zip(photos_zip) if photos_zip is not None else None
    except ImportUnreadable as unreadable:
        report.errors.append(str(unreadable))
        return report
    rows = _validate(header, records, archive, report, update_existing=update_existing)
    if dry_run or not report.ok:
        return report
    _write(rows, report, operator=operator)
    return report


# --- Reading ----------------------------------------------------------------------------------------


def _read_csv(csv_file: IO[bytes], report: ImportReport) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    raw = csv_file.read(MAX_CSV_BYTES + 1)
    if len(raw) > MAX_CSV_BYTES:
        raise ImportUnreadable(f"The CSV file is over {MAX_CSV_BYTES // (1024 * 1024)} MB; split it.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportUnreadable(
            f"The CSV file is not UTF-8 (byte {exc.start}); save it as “CSV UTF-8” and try again."
        ) from exc
    if not text.strip():
        raise ImportUnreadable("The CSV file is empty.")
    first_line = text.splitlines()[0]
    try:
        dialect = csv.Sniffer().sniff(first_line, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter)
    header = [_column(name) for name in next(reader)]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise ImportUnreadable(
            f"The header row lacks the column(s) {', '.join(missing)} (it has: {', '.join(header) or 'nothing'})."
        )
    duplicated = sorted({name for name in header if name and header.count(name) > 1})
    if duplicated:
        raise ImportUnreadable(f"The header row names {', '.join(duplicated)} more than once.")
    ignored = [name for name in header if name not in COLUMNS]
    if ignored:
        report.notes.append(f"Column(s) ignored: {', '.join(name or '(blank)' for name in ignored)}.")
    records: list[tuple[int, dict[str, str]]] = []
    for values in reader:
        if not any(value.strip() for value in values):
            continue  # blank lines, a trailing newline
        if len(records) >= MAX_ROWS:
            raise ImportUnreadable(f"The CSV file has more than {MAX_ROWS} rows; split it.")
        line = reader.line_num
        record = {name: (values[index].strip() if index < len(values) else "") for index, name in enumerate(header)}
        if len(values) > len(header):
            record["__extra__"] = "yes"
        records.append((line, record))
    return header, records


def _column(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


class _Zip:
    """The photos archive, read in memory member by member (never extracted to disk)."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or name.name.startswith(".") or "__MACOSX" in name.parts:
                continue
            self.members[str(name).lstrip("/")] = info
        self.used: set[str] = set()

    def find(self, wanted: str) -> str | None:
        """The member called ``wanted`` (a path in the zip, or a file name unique in it)."""
        wanted = wanted.strip().lstrip("/")
        if wanted in self.members:
            return wanted
        by_name = [name for name in self.members if PurePosixPath(name).name == wanted]
        return by_name[0] if len(by_name) == 1 else None

    def for_person(self, external_id: str) -> list[str]:
        """``<external_id>.<image suffix>`` anywhere, or every image in a folder named ``<external_id>``."""
        found = []
        for name in sorted(self.members):
            path = PurePosixPath(name)
            if path.suffix.lower() not in SUFFIX_CONTENT_TYPES:
                continue
            if path.stem == external_id or (len(path.parts) > 1 and path.parts[-2] == external_id):
                found.append(name)
        return found

    def read(self, name: str) -> bytes:
        info = self.members[name]
        if info.flag_bits & 0x1:
            raise InvalidImage("it is encrypted in the zip.", code="encrypted")
        if info.file_size > settings.UPLOAD_MAX_BYTES:
            raise InvalidImage(
                f"The image file is {info.file_size} bytes; the limit is {settings.UPLOAD_MAX_BYTES}.",
                code="file_too_large",
            )
        with self.archive.open(info) as handle:
            data = handle.read(settings.UPLOAD_MAX_BYTES + 1)  # the header's size is not trusted
        if len(data) > settings.UPLOAD_MAX_BYTES:
            raise InvalidImage(f"The image file is over the limit of {settings.UPLOAD_MAX_BYTES} bytes.",
                               code="file_too_large")
        return data


def _open_zip(photos_zip: IO[bytes]) -> _Zip:
    size = getattr(photos_zip, "size", None)
    if size is not None and size > MAX_ZIP_BYTES:
        raise ImportUnreadable(f"The zip is over {MAX_ZIP_BYTES // (1024 * 1024)} MB; split it.")
    try:
        archive = zipfile.ZipFile(photos_zip)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImportUnreadable("The photos file is not a readable zip archive.") from exc
    if len(archive.infolist()) > MAX_ZIP_MEMBERS:
        raise ImportUnreadable(f"The zip holds more than {MAX_ZIP_MEMBERS} files; split it.")
    return _Zip(archive)


# --- Validating -------------------------------------------------------------------------------------


def _validate(
    header: list[str], records: list[tuple[int, dict[str, str]]], archive: _Zip | None, report: ImportReport,
    *, update_existing: bool,
) -> list[_Row]:
    existing = Person.objects.in_bulk(
        [record.get("external_id", "") for _, record in records], field_name="external_id"
    )
    seen: dict[str, int] = {}
    rows: list[_Row] = []
    for line, record in records:
        external_id, name = record.get("external_id", ""), record.get("name", "")
        row = RowReport(line=line, external_id=external_id, name=name)
        report.rows.append(row)
        if record.get("__extra__"):
            row.errors.append("More values than the header has columns (a separator inside a value? quote it).")
        if external_id in seen:
            row.errors.append(f"external_id {external_id} is also on line {seen[external_id]}.")
        elif external_id:
            seen[external_id] = line
        person = existing.get(external_id)
        if person is not None and not update_existing:
            row.errors.append(
                f"{external_id} is already enrolled ({person.name}); tick “update existing people” to change them."
            )
        row.action = "update" if person is not None else "create"
        person = person if person is not None else Person()
        person.external_id, person.name = external_id, name
        _set_optional(person, record, header, row)
        try:
            person.full_clean(validate_unique=person.pk is None)
        except ValidationError as invalid:
            row.errors += [_field_message(field_name, message) for field_name, messages in invalid.message_dict.items()
                           for message in messages]
        photo_files = _photos(record, header, archive, row)
        if row.errors:
            row.action = ""
        rows.append(_Row(report=row, person=person, photo_files=photo_files))
    if archive is not None:
        unused = sorted(name for name in archive.members if name not in archive.used)
        if unused:
            shown = ", ".join(unused[:10]) + (f" and {len(unused) - 10} more" if len(unused) > 10 else "")
            report.notes.append(f"{len(unused)} file(s) in the zip belong to no row: {shown}.")
    if not records:
        report.errors.append("The CSV file has a header but no rows.")
    return rows


def _set_optional(person: Person, record: dict[str, str], header: list[str], row: RowReport) -> None:
    if "is_active" in header:
        value = record.get("is_active", "").lower()
        if value in TRUE_WORDS or value == "":
            person.is_active = True
        elif value in FALSE_WORDS:
            person.is_active = False
        else:
            row.errors.append(f"is_active: “{record['is_active']}” is not yes or no.")
    for column, end_of_day in (("valid_from", False), ("valid_until", True)):
        if column not in header:
            continue
        try:
            setattr(person, column, _moment(record.get(column, ""), end_of_day=end_of_day))
        except ValueError:
            row.errors.append(f"{column}: “{record[column]}” is not a date (2027-01-31) or a time (2027-01-31 08:00).")


def _moment(value: str, *, end_of_day: bool) -> datetime | None:
    """A date or a date and time in the site's time zone (or with its own offset); "" is None."""
    if not value:
        return None
    zone = timezone.get_current_timezone()
    if len(value) == 10:
        day = date.fromisoformat(value)
        return datetime.combine(day + timedelta(days=1) if end_of_day else day, time.min, tzinfo=zone)
    moment = datetime.fromisoformat(value)
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=zone)


def _field_message(field_name: str, message: str) -> str:
    return message if field_name == "__all__" else f"{field_name}: {message}"


def _photos(record: dict[str, str], header: list[str], archive: _Zip | None, row: RowReport) -> list[tuple[str, bytes]]:
    listed = [name.strip() for name in record.get("photos", "").split(PHOTO_SEPARATOR) if name.strip()]
    if archive is None:
        if listed:
            row.errors.append(f"photos: {', '.join(listed)} listed, but no zip of photos was given.")
        return []
    if listed:
        names = []
        for wanted in listed:
            found = archive.find(wanted)
            if found is None:
                row.errors.append(f"photo “{wanted}”: not in the zip.")
            else:
                names.append(found)
    else:
        names = archive.for_person(row.external_id) if row.external_id else []
    files = []
    for name in names:
        archive.used.add(name)
        row.photos.append(name)
        try:
            data = archive.read(name)
            validate_image(io.BytesIO(data), max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS)
        except InvalidImage as problem:
            row.errors.append(f"photo “{name}”: {problem.message}")
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            row.errors.append(f"photo “{name}”: cannot be read from the zip ({exc.__class__.__name__}).")
        else:
            files.append((name, data))
    return files


# --- Writing ----------------------------------------------------------------------------------------


def _write(rows: list[_Row], report: ImportReport, *, operator: str) -> None:
    for row in rows:
        source = f"csv import {report.csv_name} line {row.report.line}"
        try:
            with transaction.atomic():
                person = person_save(person=row.person, operator=operator, source=source)
                for name, data in row.photo_files:
                    reference_add(person=person, image_file=ContentFile(data, name=PurePosixPath(name).name),
                                  operator=operator)
        except (ValidationError, InvalidImage, DatabaseError) as failure:
            message = "; ".join(_messages(failure))
            row.report.errors.append(f"Not written: {message}")
            row.report.action = ""
            report.stopped_at_line = row.report.line
            return
        row.report.written = True
        row.report.person_id = person.pk
    report.written = True


def _messages(failure: Exception) -> list[str]:
    if isinstance(failure, ValidationError):
        return [_field_message(name, message) for name, messages in failure.message_dict.items() for message in messages]
    if isinstance(failure, InvalidImage):
        return [failure.message]
    return ["the database refused the write; try again shortly"]
