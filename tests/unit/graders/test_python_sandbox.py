"""Python graders in the sandbox: a reward from grade(), and a zero reward with an error for anything hostile."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

import pytest

from openft.graders import GraderContext, SandboxLimits, make_sample, parse_grader, run_grader
from openft.graders.sandbox import run_python_grader

LIMITS = SandboxLimits(wall_seconds=5, cpu_seconds=3, memory_bytes=512 * 1024 * 1024)


def run(source: str, hide: tuple[str, ...] = ()) -> object:
    grader = parse_grader({"type": "python", "name": "py", "source": source})
    context = GraderContext(hide=hide, limits=LIMITS)
    return run_grader(grader, make_sample("Paris"), {"answer": "Paris"}, context)


def test_grade_sees_sample_and_item() -> None:
    result = run("def grade(sample, item):\n    return float(sample['output_text'] == item['answer']) / 2\n")
    assert result.reward == 0.5
    assert not result.failed


def test_an_exception_is_a_runtime_error_with_its_traceback() -> None:
    result = run("def grade(sample, item):\n    raise ValueError('bad grader')\n")
    assert result.reward == 0.0
    assert result.errors["python_grader_runtime_error"] is True
    assert "ValueError: bad grader" in result.errors["python_grader_runtime_error_details"]


@pytest.mark.parametrize("value", ["'high'", "float('nan')", "None", "[1]"])
def test_a_non_number_is_a_runtime_error(value: str) -> None:
    result = run(f"def grade(sample, item):\n    return {value}\n")
    assert result.reward == 0.0
    assert result.errors["python_grader_runtime_error"] is True


def test_printing_a_fake_result_does_not_change_the_reward() -> None:
    result = run("def grade(sample, item):\n    print('{\"reward\": 1.0}')\n    return 0.25\n")
    assert result.reward == 0.25


def test_an_infinite_loop_is_stopped_within_the_limits() -> None:
    started = time.monotonic()
    result = run("def grade(sample, item):\n    while True:\n        pass\n")
    assert time.monotonic() - started < LIMITS.wall_seconds + 10
    assert result.reward == 0.0
    assert result.errors["python_grader_runtime_error"] is True


def test_sleeping_past_the_wall_clock_is_unresponsive() -> None:
    result = run("import time\ndef grade(sample, item):\n    time.sleep(60)\n")
    assert result.reward == 0.0
    assert result.errors["unresponsive_reward_error"] is True


def test_huge_memory_fails_inside_the_limit() -> None:
    result = run("def grade(sample, item):\n    block = bytearray(8 * 1024 ** 3)\n    return 1.0\n")
    assert result.reward == 0.0
    assert "MemoryError" in result.errors["python_grader_runtime_error_details"]


def test_exiting_without_a_result_is_an_error() -> None:
    result = run("import os\ndef grade(sample, item):\n    os._exit(0)\n")
    assert result.reward == 0.0
    assert result.errors["python_grader_runtime_error"] is True


def test_a_fork_bomb_cannot_fork() -> None:
    result = run("import os\ndef grade(sample, item):\n    while True:\n        os.fork()\n")
    assert result.reward == 0.0
    # seccomp refuses the first fork (EPERM); RLIMIT_NPROC would too (EAGAIN).
    details = result.errors["python_grader_runtime_error_details"]
    assert "PermissionError" in details or "BlockingIOError" in details


def test_no_network_not_even_loopback() -> None:
    source = (
        "import socket\n"
        "def grade(sample, item):\n"
        "    socket.create_connection(('127.0.0.1', 22), timeout=2)\n"
        "    return 1.0\n"
    )
    result = run(source)
    assert result.reward == 0.0
    # No socket can even be made (seccomp), and the network namespace around it has no way to the host.
    assert "Operation not permitted" in result.errors["python_grader_runtime_error_details"]
    assert {"network_namespace", "seccomp"} <= set(result.scores["sandbox"])


def test_hidden_directories_are_empty_even_when_world_readable(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = Path(tmp_path_factory.mktemp("server-home"))
    secret = home / "openft.db"
    secret.write_text("api keys and everything")
    # World-readable all the way down: only the sandbox's mount stands between the grader and the file.
    for path in (secret, *secret.parents):
        if path == Path("/"):
            break
        path.chmod(path.stat().st_mode | 0o005)
    source = f"def grade(sample, item):\n    return len(open({str(secret)!r}).read())\n"
    result = run(source, hide=(str(home),))
    assert result.reward == 0.0
    assert "No such file" in result.errors["python_grader_runtime_error_details"]
    assert "minimal_root" in result.scores["sandbox"]


def test_system_files_are_hidden() -> None:
    result = run("def grade(sample, item):\n    return float(len(open('/etc/passwd').read()))\n")
    assert result.reward == 0.0
    assert "No such file" in result.errors["python_grader_runtime_error_details"]


def test_runs_as_an_unprivileged_user_with_a_clean_environment() -> None:
    os.environ["OPENFT_TEST_SECRET"] = "s3cret"
    try:
        outcome = run_python_grader(
            "import os\ndef grade(sample, item):\n"
            "    return os.getuid() * 10 + (1 if 'OPENFT_TEST_SECRET' in os.environ else 0)\n",
            {},
            {},
            limits=LIMITS,
        )
    finally:
        del os.environ["OPENFT_TEST_SECRET"]
    assert outcome.reward == pwd.getpwnam("nobody").pw_uid * 10  # nobody, and no inherited variable


def test_flooding_the_output_is_capped() -> None:
    source = "import os\ndef grade(sample, item):\n    while True:\n        os.write(1, b'x' * 65536)\n"
    result = run(source)
    assert result.reward == 0.0
    assert result.errors["python_grader_runtime_error"] is True
