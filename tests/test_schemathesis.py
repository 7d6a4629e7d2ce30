"""schemathesis against the gateway's own OpenAPI schema (issue 17): every operation gets
generated requests, valid and invalid, in-process through schemathesis's ASGI transport, on
the scripted box double (no SSH, no model). None may get a 5xx, and every answer must match
what the schema declares for its status (body and content type).

Bounded and repeatable: a fixed number of examples per operation, derandomized, no example
database, so two runs send the same requests; the whole run takes seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.test_models_api import gateway

MAX_EXAMPLES = 25  # per operation and generation mode
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# The doctor runs every check of the box (a smoke chat included) per request: seconds each,
# and what it says of bad input (an unknown box) is in tests/test_bad_input.py.
SLOW = ("/api/doctor", "/api/doctor/stream")
BOUNDED = settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                   suppress_health_check=list(HealthCheck), print_blob=False)


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The schema as the app serves it, loaded through schemathesis's ASGI transport, which
    runs the app's lifespan in a thread of its own (ended here)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        app = gateway(tmp_path_factory.mktemp("schemathesis"), monkeypatch,
                      adapter_path="/runs/lora", max_message_chars=4000,
                      max_new_tokens_limit=64,
                      gateway_allowed_hosts="testserver")  # its ASGI client's Host
        try:
            yield schemathesis.openapi.from_asgi("/openapi.json", app).exclude(
                path=list(SLOW))
        finally:
            shutdown_lifespans()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid input", "invalid input"])
def test_no_operation_fails_or_breaks_its_schema(api_schema, mode: GenerationMode) -> None:
    """Each operation on its own (so one failure does not hide the others), with the checks
    above; the failures, by operation, at the end."""
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 40  # the schema was read, and not to a stub
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (len(operation.body) or len(operation.query)):
            continue  # only ids in its path (or a header): nothing to get wrong but the id

        @BOUNDED
        @given(case=operation.as_strategy(generation_mode=mode))
        def exercise(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            exercise()
        except Unsatisfiable:  # nothing in it can be invalid (query flags that take anything)
            assert mode is GenerationMode.NEGATIVE, operation.label
        except (Exception, BaseExceptionGroup) as exc:  # the falsifying case and its checks
            failures[operation.label] = str(exc)[:3000]
    assert failures == {}, "\n\n".join(f"{label}:\n{why}" for label, why in failures.items())
