"""Where no namespace can be created (the server starts under ``no_namespaces.py``, a seccomp filter like
Docker's default profile), python graders are refused with a 400 wherever they enter, every other grader
still works, and ``openft serve`` and ``openft worker`` say so at start; with
``OPENFT_ALLOW_UNCONFINED_PYTHON_GRADERS=true`` they run, and the server warns."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from deployment_support import (
    AS_ROOT,
    NO_NAMESPACES,
    ServiceServer,
    as_service_user,
    service_env,
    service_home,
    start_service,
    stop_service,
)

pytestmark = [pytest.mark.deployment]

ASSETS = Path(__file__).parents[1] / "assets"
PYTHON = {"type": "python", "name": "py", "source": "def grade(sample, item):\n    return 0.75\n"}
CHECK = {"type": "string_check", "name": "eq", "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}
CHECK |= {"operation": "eq"}
SIMILAR = {"type": "text_similarity", "name": "fuzzy", "input": "{{sample.output_text}}"}
SIMILAR |= {"reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"}
MIXED = {"type": "multi", "name": "mixed", "graders": {"eq": CHECK, "py": PYTHON}, "calculate_output": "eq + py"}
NO_PYTHON = {"type": "multi", "name": "both", "graders": {"eq": CHECK, "fuzzy": SIMILAR}}
NO_PYTHON |= {"calculate_output": "(eq + fuzzy) / 2"}


def _server(user: pwd.struct_passwd, factory: pytest.TempPathFactory, **settings: str) -> ServiceServer:
    home = service_home(user, factory)
    return start_service(user, home, f"sqlite:///{home / 'openft.db'}", without_namespaces=True, **settings)


@pytest.fixture(scope="module")
def refused(service_account: pwd.struct_passwd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    server = _server(service_account, tmp_path_factory)
    yield server
    stop_service(server)


@pytest.fixture(scope="module")
def opted_out(service_account: pwd.struct_passwd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    server = _server(service_account, tmp_path_factory, allow_unconfined_python_graders="true")
    yield server
    stop_service(server)


def _error(caught: pytest.ExceptionInfo[openai.BadRequestError]) -> dict[str, Any]:
    assert caught.value.status_code == 400
    return caught.value.body  # type: ignore[return-value]


def test_serve_logs_that_python_graders_are_refused(refused: ServiceServer) -> None:
    log = refused.log_text()
    assert "python graders: refused" in log
    assert "the sandbox could not be set up: bwrap: " in log  # bubblewrap's own words, from the trial run


@pytest.mark.parametrize(
    ("grader", "param"), [(PYTHON, "grader"), (MIXED, "grader.graders.py")], ids=["python", "multi"]
)
def test_run_and_validate_refuse_a_python_grader(refused: ServiceServer, grader: dict, param: str) -> None:
    graders = refused.client("org-beta").fine_tuning.alpha.graders
    for call in (
        lambda: graders.run(grader=grader, model_sample="hello", item={"answer": "hello"}),
        lambda: graders.validate(grader=grader),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            call()
        error = _error(caught)
        assert error["param"] == param and error["code"] == "python_grader_unavailable"
        assert "cannot be confined" in error["message"] and "bwrap: " in error["message"]


def test_a_reinforcement_job_with_a_python_grader_is_refused(refused: ServiceServer) -> None:
    client = refused.client("org-alpha")
    files = [
        client.files.create(file=(name, (ASSETS / name).read_bytes()), purpose="fine-tune").id
        for name in ("rft_train.jsonl", "rft_valid.jsonl")
    ]

    def create(grader: dict) -> Any:
        method = {"type": "reinforcement", "reinforcement": {"grader": grader}}
        return client.fine_tuning.jobs.create(
            model="openft/tiny-chat", training_file=files[0], validation_file=files[1], method=method
        )

    for grader, param in ((PYTHON, "method.reinforcement.grader"), (MIXED, "method.reinforcement.grader.graders.py")):
        with pytest.raises(openai.BadRequestError) as caught:
            create(grader)
        error = _error(caught)
        assert error["param"] == param and error["code"] == "python_grader_unavailable"
    job = create(NO_PYTHON)  # the same job with graders that need no sandbox is accepted
    assert job.method.reinforcement.grader.type == "multi"
    client.fine_tuning.jobs.cancel(job.id)


@pytest.mark.parametrize(
    ("grader", "reward"), [(CHECK, 1.0), (SIMILAR, 1.0), (NO_PYTHON, 1.0)], ids=["string_check", "similarity", "multi"]
)
def test_every_other_grader_still_works(refused: ServiceServer, grader: dict, reward: float) -> None:
    graders = refused.client("org-beta").fine_tuning.alpha.graders
    assert graders.validate(grader=grader).grader.type == grader["type"]
    assert graders.run(grader=grader, model_sample="hello", item={"answer": "hello"}).reward == reward
    assert graders.run(grader=grader, model_sample="bye", item={"answer": "hello"}).reward < reward


def test_the_worker_logs_the_refusal_too(refused: ServiceServer, service_account: pwd.struct_passwd) -> None:
    env = service_env(service_account, refused.home, f"sqlite:///{refused.home / 'openft.db'}")
    argv = [sys.executable, str(NO_NAMESPACES), sys.executable, "-m", "openft", "worker"]
    worker = subprocess.Popen(
        as_service_user(service_account, argv),
        env=env,
        cwd=service_account.pw_dir if AS_ROOT else refused.home,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, lines = time.time() + 120, []
        while time.time() < deadline and worker.stderr is not None:
            line = worker.stderr.readline()
            lines.append(line)
            if "python graders:" in line or not line:
                break
        assert any("python graders: refused" in line for line in lines), "".join(lines)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.mark.skipif(not AS_ROOT, reason="checks a server run as root")
def test_as_root_too_the_probe_fails_closed() -> None:
    code = "import json; from openft.graders.confinement import probe; print(json.dumps(probe().__dict__))"
    done = subprocess.run(
        [sys.executable, str(NO_NAMESPACES), sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    confinement = json.loads(done.stdout.strip().splitlines()[-1])
    assert confinement["available"] is False and "Operation not permitted" in confinement["reason"]


def test_the_opt_out_runs_python_graders_and_warns(opted_out: ServiceServer) -> None:
    assert "python graders: running UNCONFINED (OPENFT_ALLOW_UNCONFINED_PYTHON_GRADERS=true)" in opted_out.log_text()
    graders = opted_out.client("org-beta").fine_tuning.alpha.graders
    assert graders.validate(grader=PYTHON).grader.type == "python"
    answer = graders.run(grader=MIXED, model_sample="hello", item={"answer": "hello"})
    assert answer.reward == 1.75 and not answer.metadata.errors.python_grader_server_error
    steps = set(graders.run(grader=PYTHON, model_sample="hello").metadata.scores["sandbox"])
    assert "rlimits" in steps and not steps & {"user_namespace", "pid_namespace", "minimal_root"}
    assert os.path.isdir(opted_out.home)  # the server's own data is still there, untouched by the grader
