"""Property-based fuzzing of openft's own OpenAPI document (schemathesis): on the files, uploads, jobs,
checkpoint-permission and models routes, generated requests — valid and invalid — never get a 5xx, and
every answer matches the document (status code, content type, headers, body schema).

Inference routes are left out (they would load a model); no worker runs, so no job trains.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from openft.api.app import create_app
from openft.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FUZZED = r"^/v1/(files|uploads|fine_tuning|models)"
EXAMPLES = 10


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[schemathesis.BaseSchema]:
    home = tmp_path_factory.mktemp("fuzz")
    (home / "models").symlink_to(models_dir)
    app = create_app(Settings(home=home, requests_per_minute=0), embedded_worker=False)
    yield schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=FUZZED)


def _fuzz(operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_api_matches_its_openapi_document(
    api_schema: schemathesis.BaseSchema, mode: schemathesis.GenerationMode
) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    if mode == schemathesis.GenerationMode.NEGATIVE:
        # With only string path parameters every value is valid: there is no invalid request to make.
        operations = [op for op in operations if len(op.query) or len(op.body)]
    for operation in operations:
        try:
            _fuzz(operation, mode)
        except Unsatisfiable:
            # A query of optional strings only: hypothesis may still find nothing invalid to send.
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # collect every operation's first failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_the_document_declares_errors_and_keeps_colons_in_model_ids(api_schema: schemathesis.BaseSchema) -> None:
    doc = api_schema.raw_schema
    jobs = doc["paths"]["/v1/fine_tuning/jobs/{fine_tuning_job_id}"]["get"]["responses"]
    assert {"200", "400", "401", "404", "413", "429"} <= set(jobs) and "422" not in jobs
    assert jobs["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "/v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions" in doc["paths"]
    assert "/v1/uploads/{upload_id}/parts" in doc["paths"]
