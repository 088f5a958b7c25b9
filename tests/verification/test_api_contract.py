"""The device API against its own OpenAPI schema, property-based (schemathesis + hypothesis).

Generated requests, valid and invalid, must never get a server error, only status codes the schema
documents, and answers shaped as it says. Whether a schema-valid request is accepted is not checked: a
schema cannot say "a decodable photo of one face", so random bytes are refused (400 ``unreadable_image``)
as documented. Tasks run in-process with the fake model, as in the other API tests.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db(transaction=False)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _schema():
    # Loaded at collection from the app itself (the schema view reads no database). Not through
    # schemathesis.pytest.from_fixture, which pytest 9 breaks (it sets a node attribute pytest removed).
    from accesscontrol.wsgi import application

    loaded = schemathesis.openapi.from_wsgi("/api/schema/", application)
    # Invalid requests too (wrong types, bad ids, out-of-range waits): those are where a server error hides.
    # Deterministic: the same examples on every run, so CI is repeatable; `st run` (README) explores further.
    loaded.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
                                    deterministic=True)
    return loaded


schema = _schema()


@schema.parametrize()
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_every_answer_is_documented_and_none_is_a_server_error(case, device_and_token, enrolled_person):
    _, token = device_and_token
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)
