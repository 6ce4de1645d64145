"""Schemathesis against the served OpenAPI spec (in-process ASGI, bounded examples).

Every operation gets generated requests, valid and invalid by the spec; each answer must
be no server error, have a status and body the spec declares, and refuse invalid input.
Random bytes in a schema-valid upload are refused with 422 (they are not audio), which the
spec cannot express, so "schema-valid input is accepted" is the one check left out.
"""
from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from hypothesis import HealthCheck, given, settings  # noqa: E402  (schemathesis brings hypothesis)
from schemathesis.checks import load_all_checks  # noqa: E402

load_all_checks()
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(ps_asr, tiny):
    from speechlm.serve.app import create_app
    from speechlm.serve.state import ServeConfig, ServeState

    state = ServeState(ServeConfig(max_seconds=20.0, decode_processes=False), llm=tiny,
                       llm_name="tiny")
    state._asr["pocketsphinx"] = ps_asr  # loaded once for the session
    app = create_app(state)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    state.close()


def test_api_conforms_to_its_spec(api_schema):
    # One hypothesis run per operation (schemathesis' pytest plugin cannot take a fixture
    # under the pytest here: its from_fixture fails on Function._nodeid).
    operations = [op.ok() for op in api_schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "POST /v1/transcribe", "POST /v1/audio/transcriptions", "POST /v1/rescore",
        "GET /healthz", "GET /metrics"}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
