"""Property-based HTTP fuzzing driven by the OpenAPI document against a real server: never a 5xx,
and every answer matches the documented status codes, content types and schemas.

The operations are read from the same RouteDoc tables the server publishes at /openapi.json (a
test below checks the two are equal), so each route is its own test case. Bounded: FUZZ_EXAMPLES
examples per operation and mode: valid bodies (positive) and bodies that break the schema
(negative).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.app import route_docs
from server.openapi import build
from tests.conftest import TOKEN
from tests.server_process import ServerProcess

FUZZ_EXAMPLES = 25
SPEC = build(route_docs(), token_required=True)
SCHEMA = schemathesis.openapi.from_dict(SPEC)
OPERATIONS = {op.ok().label: op.ok() for op in SCHEMA.get_all_operations()}


def _has_input(label: str) -> bool:
    method, path = label.split(" ", 1)
    op = SPEC["paths"][path][method.lower()]
    return "parameters" in op or "requestBody" in op


def _streams(label: str) -> bool:
    """Endless responses (GET /events, Server-Sent Events) cannot be read to the end."""
    method, path = label.split(" ", 1)
    return "text/event-stream" in SPEC["paths"][path][method.lower()]["responses"]["200"]["content"]


# Negative generation needs something to break: operations without input get positive only.
CASES = [(label, mode) for label in sorted(OPERATIONS) for mode in schemathesis.GenerationMode
         if (mode is schemathesis.GenerationMode.POSITIVE or _has_input(label))
         and not _streams(label)]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data: Path = tmp_path_factory.mktemp("fuzz") / "data"
    with ServerProcess(data, "--token", TOKEN, "--fsync", "none") as proc:
        yield proc


def test_served_document_is_the_fuzzed_one(fuzz_server: ServerProcess) -> None:
    served = httpx.get(f"{fuzz_server.url}/openapi.json", headers={"token": TOKEN}).json()
    assert served == SPEC


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{lb}-{m.value}" for lb, m in CASES])
def test_no_5xx_and_conformant_answers(fuzz_server: ServerProcess, label: str,
                                       mode: schemathesis.GenerationMode) -> None:
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=fuzz_server.url,
            headers={"token": TOKEN},
            checks=[schemathesis.checks.not_a_server_error, status_code_conformance,
                    content_type_conformance, response_schema_conformance],
        )

    fuzz()
