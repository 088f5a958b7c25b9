"""Who may do what (issue 9, item 2): the staff roles and the permissions each role holds.

The one place that names them. ``models.py`` declares the custom permissions from here
(``Meta.permissions``), a data migration creates the roles as groups from ``ROLES``, the admin and the
media view ask ``has_perm`` for the names defined here, and the tests build one persona per role from
the same table. Nothing checks ``is_staff`` for more than "may use the admin at all".

Roles are groups; a staff account gets its rights only by being in one (or by being given a single
permission on purpose). A superuser has every permission. Changing ``ROLES`` needs a new data migration
that calls ``groups_sync`` again: migrations that already ran are not re-run.

This module imports no models (``models.py`` imports it).
"""
from __future__ import annotations

from dataclasses import dataclass

APP_LABEL = "verification"

# --- Custom permissions: codename and the model that declares it -----------------------------------

VIEW_REFERENCE_PHOTOS = "view_reference_photos"  # ReferenceImage: references/ and faces/ files
VIEW_SNAPSHOTS = "view_snapshots"  # CheckIn: snapshots/ files
REVIEW_CHECKINS = "review_checkin"  # CheckIn: admit or refuse a check-in in the review band (guard)
ISSUE_DEVICE_TOKENS = "issue_device_token"  # Device: a new device, or a new token for one
REVOKE_DEVICES = "revoke_device"  # Device
REINSTATE_DEVICES = "reinstate_device"  # Device: a revoked device back, with a new token
UNLOCK_LOCKOUTS = "unlock_lockout"  # Lockout
ERASE_PEOPLE = "erase_person"  # Person: photos, embeddings, snapshots; audit pseudonymised
EXPORT_AUDIT = "export_auditentry"  # AuditEntry: the CSV export
VERIFY_AUDIT_CHAIN = "verify_audit_chain"  # AuditEntry: walk the hash chain from the admin

CUSTOM_PERMISSIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "referenceimage": ((VIEW_REFERENCE_PHOTOS, "Can view reference photos and aligned faces (biometric)"),),
    "checkin": (
        (VIEW_SNAPSHOTS, "Can view check-in snapshots (biometric)"),
        (REVIEW_CHECKINS, "Can admit or refuse check-ins in review (guard)"),
    ),
    "device": (
        (ISSUE_DEVICE_TOKENS, "Can issue device tokens"),
        (REVOKE_DEVICES, "Can revoke devices"),
        (REINSTATE_DEVICES, "Can reinstate revoked devices"),
    ),
    "lockout": ((UNLOCK_LOCKOUTS, "Can unlock lockouts"),),
    "person": ((ERASE_PEOPLE, "Can erase people (right to erasure)"),),
    "auditentry": (
        (EXPORT_AUDIT, "Can export the audit log"),
        (VERIFY_AUDIT_CHAIN, "Can verify the audit chain"),
    ),
}


def model_permissions(model_name: str) -> list[tuple[str, str]]:
    """``Meta.permissions`` of one model (``model_name`` lower case, as in ``_meta.model_name``)."""
    return list(CUSTOM_PERMISSIONS[model_name])


def codename_model(codename: str) -> str:
    """The model (lower case) that declares ``codename``: a custom permission's, or ``<action>_<model>``'s."""
    for model_name, declared in CUSTOM_PERMISSIONS.items():
        if any(name == codename for name, _ in declared):
            return model_name
    return codename.split("_", 1)[1]


def perm(codename: str) -> str:
    """The name ``User.has_perm`` takes: ``"verification.<codename>"``."""
    return f"{APP_LABEL}.{codename}"


def _model(model_name: str, *actions: str) -> frozenset[str]:
    return frozenset(f"{action}_{model_name}" for action in actions)


# --- Roles -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    name: str  # the group's name
    summary: str
    codenames: frozenset[str]  # all in APP_LABEL

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset(perm(codename) for codename in self.codenames)


# Doors, zones, access groups, their windows, members and holidays (issue 11, item 1).
ACCESS_MODELS = ("zone", "door", "accessgroup", "accessgroupmembership", "accesswindow", "holiday")


def _access(*actions: str) -> frozenset[str]:
    return frozenset().union(*(_model(model_name, *actions) for model_name in ACCESS_MODELS))


OPERATOR = Role(
    name="Operator",
    summary="Enrols people and their reference photos, manages door devices and their tokens, and decides "
    "who may pass which door when (zones, doors, access groups, windows, holidays).",
    codenames=_model("person", "view", "add", "change", "delete")
    | _model("referenceimage", "view", "add", "change", "delete")
    | _model("device", "view", "add", "change")
    | _access("view", "add", "change", "delete")
    | {VIEW_REFERENCE_PHOTOS, ISSUE_DEVICE_TOKENS, REVOKE_DEVICES, REINSTATE_DEVICES},
)
SECURITY_OFFICER = Role(
    name="Security officer",
    summary="Reviews check-ins and their snapshots (and may answer the review queue), reads and exports the "
    "audit log, unlocks lockouts.",
    codenames=_model("checkin", "view")
    | _model("auditentry", "view")
    | _model("lockout", "view")
    | _access("view")  # who may pass a door, to judge a refusal; changing that is the operator's
    | {VIEW_SNAPSHOTS, EXPORT_AUDIT, UNLOCK_LOCKOUTS, REVIEW_CHECKINS},
)
GUARD = Role(
    name="Guard",
    summary="Answers the review queue: sees the snapshot beside the claimed person's reference photos and "
    "admits or refuses check-ins whose score fell in the review band.",
    codenames=_model("checkin", "view") | {VIEW_SNAPSHOTS, VIEW_REFERENCE_PHOTOS, REVIEW_CHECKINS},
)
AUDITOR = Role(
    name="Auditor",
    summary="Reads and exports the audit log and verifies its chain; sees no biometric image.",
    codenames=_model("auditentry", "view") | {EXPORT_AUDIT, VERIFY_AUDIT_CHAIN},
)
DATA_PROTECTION_OFFICER = Role(
    name="Data-protection officer",
    summary="Erases people on request (photos, embeddings, snapshots; the audit log is pseudonymised).",
    codenames=_model("person", "view") | {ERASE_PEOPLE},
)

ROLES: tuple[Role, ...] = (OPERATOR, SECURITY_OFFICER, AUDITOR, DATA_PROTECTION_OFFICER, GUARD)


def groups_sync(*, group_model, permission_model, missing_ok: bool = False) -> None:  # noqa: ANN001 - historical models
    """Create each role's group and give it exactly the role's permissions (idempotent).

    Takes the model classes so that a data migration can pass its historical ones. The permissions
    must exist (a migration creates them first: ``post_migrate`` runs only after every migration).
    ``missing_ok``: for an early migration on a fresh database, where permissions declared by later
    migrations do not exist yet; the latest migration that syncs the roles runs strict.
    """
    for role in ROLES:
        group, _ = group_model.objects.get_or_create(name=role.name)
        found = list(
            permission_model.objects.filter(content_type__app_label=APP_LABEL, codename__in=role.codenames)
        )
        missing = role.codenames - {permission.codename for permission in found}
        if missing and not missing_ok:
            # A model a later migration creates has no permissions yet (nor a content type): that
            # migration syncs the roles again (0017 for the access models after 0016's sync).
            content_types = permission_model._meta.get_field("content_type").related_model
            existing = set(content_types.objects.filter(app_label=APP_LABEL).values_list("model", flat=True))
            missing = {codename for codename in missing if codename_model(codename) in existing}
        if missing and not missing_ok:
            raise LookupError(f"Permissions missing for role {role.name!r}: {sorted(missing)}")
        group.permissions.set(found)


def groups_remove(*, group_model) -> None:  # noqa: ANN001
    group_model.objects.filter(name__in=[role.name for role in ROLES]).delete()


# --- Biometric images: which permission each media folder needs ------------------------------------

MEDIA_FOLDER_PERMISSIONS: dict[str, str] = {
    "references": perm(VIEW_REFERENCE_PHOTOS),
    "faces": perm(VIEW_REFERENCE_PHOTOS),  # aligned crops of reference photos
    "snapshots": perm(VIEW_SNAPSHOTS),
    "probe_faces": perm(VIEW_SNAPSHOTS),  # the snapshot's aligned face (CheckIn.probe_face)
}


def media_permission(path: str) -> str | None:
    """The permission needed to see the stored file ``path`` (``<folder>/<name>``), or None: not servable.

    Stored names are exactly one folder and one file name; anything else (``..``, ``.``, empty parts,
    deeper paths, backslashes) could name a file of another folder and is refused.
    """
    if "\\" in path:
        return None
    parts = path.split("/")
    if len(parts) != 2 or any(part in ("", ".", "..") for part in parts):
        return None
    return MEDIA_FOLDER_PERMISSIONS.get(parts[0])


def may_view_image(user, name: str) -> bool:  # noqa: ANN001 - a User (or AnonymousUser)
    """Whether ``user`` may see the stored image ``name`` (admin thumbnails and links, the media view)."""
    required = media_permission(name)
    return required is not None and user.has_perm(required)

