from rest_framework.permissions import BasePermission

from verification.models import Device


class IsDevice(BasePermission):
    """Only requests authenticated by a device token."""

    def has_permission(self, request, view) -> bool:  # noqa: ANN001 - DRF signature
        return isinstance(request.auth, Device)
