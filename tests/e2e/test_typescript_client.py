"""The official TypeScript client (npm ``openai``) runs the core loop against a live server."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_support import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TS_DIR = Path(__file__).parent / "ts"
ASSETS = Path(__file__).parents[1] / "assets"


def test_typescript_client_core_loop(live_server: LiveServer) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for this test (scripts/setup installs the npm client)"
    assert (TS_DIR / "node_modules" / "openai").is_dir(), "run scripts/setup: it installs tests/e2e/ts deps"
    result = subprocess.run(
        [node, str(TS_DIR / "core_loop.mjs"), live_server.base_url, str(ASSETS / "tiny_train.jsonl")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    job = seen["job"]
    assert job["status"] == "succeeded" and job["fine_tuned_model"].startswith("ft:openft/tiny-chat:personal:ts:")
    assert job["hyperparameters"]["n_epochs"] == 2 and job["seed"] == 11 and job["trained_tokens"] > 0
    assert len(job["result_files"]) == 1
    assert seen["events"][0]["message"] == "The job has successfully completed"
    assert len(seen["events"]) > 10  # auto-pagination went past the first page of 10
    assert seen["checkpoints"] == [f"{job['fine_tuned_model']}:ckpt-step-{s}" for s in (24, 12)]
    assert seen["reply"]["usage"]["completion_tokens"] > 0
    assert seen["notFound"] == {"status": 404, "type": "invalid_request_error", "code": "fine_tuning_job_not_found"}


def test_typescript_client_evals(live_server: LiveServer) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for this test (scripts/setup installs the npm client)"
    result = subprocess.run(
        [node, str(TS_DIR / "evals.mjs"), live_server.base_url], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["eval"]["object"] == "eval" and seen["eval"]["testing_criteria"][0]["name"] == "answered"
    run = seen["run"]
    assert run["status"] == "completed" and seen["statuses"][0] == "queued"
    assert run["result_counts"]["total"] == 5
    counts = run["result_counts"]
    assert counts["passed"] + counts["failed"] + counts["errored"] == 5
    items = sorted(seen["items"], key=lambda i: i["id"])
    assert [i["id"] for i in items] == [0, 1, 2, 3, 4]  # all pages
    countries = ["France", "Italy", "Spain", "Peru", "Chile"]
    assert [i["item"]["country"] for i in items] == countries
    assert [i["input"][0]["content"] for i in items] == [f"Capital of {c}?" for c in countries]
    assert all(i["results"][0]["name"] == "answered" for i in items)
    assert seen["retrieved"] is True
    assert seen["notFound"] == {"status": 404, "type": "invalid_request_error", "code": "eval_not_found"}
