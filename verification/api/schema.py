"""OpenAPI schema adjustments that drf-spectacular cannot derive from the serializers."""
from __future__ import annotations

from typing import Any

# Request bodies the views refuse with 400 ``unknown_fields`` when they carry any other field
# (``views._reject_unknown_fields``): their schema says so, so generated clients do not send extras.
CLOSED_REQUEST_COMPONENTS = ("CheckInSubmitRequest",)


def close_request_bodies(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular post-processing hook: ``additionalProperties: false`` on the closed request bodies.

    A component missing here means a serializer was renamed: fail the schema loudly, never serve it
    silently open."""
    schemas = result.get("components", {}).get("schemas", {})
    for name in CLOSED_REQUEST_COMPONENTS:
        if name not in schemas:
            raise KeyError(f"schema component {name} not found; update CLOSED_REQUEST_COMPONENTS")
        schemas[name]["additionalProperties"] = False
    return result
