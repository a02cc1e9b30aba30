"""Property-based API checks with schemathesis against our own OpenAPI description: for every
operation, generated requests never get a 5xx, and every answer matches the description (status code
documented, content type, body schema, headers), and the public operations are declared as such.

An admin (who holds every role) gets schema-valid requests and schema-breaking ones; an engineer and an
anonymous caller a few schema-valid ones — their answers are mostly 403/401 problems, which must be
described too (every role's 403 comes from the same check and handler, and the authorisation matrix in
test_access_matrix.py already runs every role on every endpoint, so one narrow role is enough here).
Not checked: that schema-valid bodies are accepted (a valid shape can still break a business rule, a
lead needs an e-mail or a phone: a 422 by design), and that schema-breaking ones are refused (unknown
query parameters are ignored on purpose, as most HTTP APIs do)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.specs.openapi.checks import negative_data_rejection

from server.auth.services import create_user, issue_tokens
from server.db import transaction
from server.extensions import db

# (generation mode, examples per operation): bounded so the suite stays within minutes on two cores.
PLANS = {"admin": [(GenerationMode.POSITIVE, 8), (GenerationMode.NEGATIVE, 4)],
         "engineer": [(GenerationMode.POSITIVE, 2)],
         "anonymous": [(GenerationMode.POSITIVE, 1)]}


def _bearer(app, user_id: int | None) -> dict:
    """Headers with a fresh access token of the user (none for anonymous)."""
    if user_id is None:
        return {}
    from server.auth.models import User

    with app.app_context(), transaction():
        token = issue_tokens(db.session.get(User, user_id), "schemathesis")["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("who", list(PLANS))
def test_every_operation_conforms_to_its_description(app, who):
    user_id = None
    if who != "anonymous":
        with app.app_context(), transaction():
            user_id = create_user(f"fuzz-{who}", "password-123", [who]).id
    headers = _bearer(app, user_id)
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    failures = []
    app.config["HIDE_INTERNAL_ERRORS"] = True  # a 5xx must be seen as a response here, not an exception
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            # Logging out revokes the token it is called with: it gets a fresh one every time.
            logout = operation.path.endswith("/auth/logout")
            for mode, examples in PLANS[who]:

                def fresh_headers(logout=logout):
                    return _bearer(app, user_id) if logout else headers

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                def check(case):
                    case.call_and_validate(headers=fresh_headers(),
                                           excluded_checks=[positive_data_acceptance, negative_data_rejection])

                try:
                    check()
                except (Exception, BaseExceptionGroup) as err:  # noqa: BLE001 - collect all, report all
                    if "Unable to satisfy assumptions" in str(err):
                        continue  # nothing schema-breaking can be made for it (no parameters, no body)
                    failures.append(f"{mode.value} {operation.method.upper()} {operation.path}: {str(err)[:600]}")
    finally:
        app.config["HIDE_INTERNAL_ERRORS"] = False
    assert failures == [], "\n\n".join(failures)
