"""Property-based API checks with schemathesis against our own OpenAPI description: for every
operation, generated requests (as an admin, who holds every role) never get a 5xx, and every answer
matches the description (status code documented, content type, body schema, headers), and the
public operations are declared as such. Not checked: that schema-valid bodies are accepted — a valid
shape can still break a business rule (a lead needs an e-mail or a phone), which is a 422 by design."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from server.auth.services import create_user, issue_tokens
from server.db import transaction

EXAMPLES = 8


def test_every_operation_conforms_to_its_description(app):
    with app.app_context(), transaction():
        token = issue_tokens(create_user("fuzz-admin", "password-123", ["admin"]), "schemathesis")["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    failures = []
    app.config["HIDE_INTERNAL_ERRORS"] = True  # a 5xx must be seen as a response here, not an exception
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path.endswith("/auth/logout"):
                continue  # it revokes the token the other operations need (covered in test_auth_and_api)

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

            try:
                check()
            except (Exception, BaseExceptionGroup) as err:  # noqa: BLE001 - collect all, report all
                failures.append(f"{operation.method.upper()} {operation.path}: {str(err)[:600]}")
    finally:
        app.config["HIDE_INTERNAL_ERRORS"] = False
    assert failures == [], "\n\n".join(failures)
