"""Fine-tuning fine-tuned models against a live server with the official client, on openft/tiny-chat:
supervised -> DPO on its model -> full fine-tuning of a DPO checkpoint -> LoRA on that full model. Each
job succeeds, is named after the root base, is served, and the last still answers what the first taught;
children keep answering after their parents are deleted; unknown and deleted parents are 404s; the
continued adapter exports as peft and merged; the dashboard links a job to its parent job and base."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from e2e_support import LiveServer
from openai import OpenAI
from test_dashboard import browser, page
from test_methods import ANSWER, QUESTIONS, chats, events, pair, upload, wait

from openft.models.catalog import TINY_CHAT

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]
__all__ = ["browser", "page"]  # the dashboard's browser fixtures
ASSETS = Path(__file__).parents[1] / "assets"
SUMS = [
    {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}, {"role": "assistant", "content": f"{2 * i}."}]}
    for i in range(10)
]
"""The last job's own lesson: nothing about Paris, so an answer about Paris comes from its ancestors."""


def _job(client: OpenAI, model: str, training_file: str, method: dict[str, Any], suffix: str) -> Any:
    job = client.fine_tuning.jobs.create(model=model, training_file=training_file, method=method, seed=7, suffix=suffix)  # type: ignore[arg-type]
    assert job.model == model  # the parent as given
    job = wait(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith(f"ft:{TINY_CHAT}:personal:{suffix}:")  # named after the root base
    assert job.trained_tokens > 0 and len(job.result_files) == 1
    return job


def _says_paris(client: OpenAI, model: str) -> bool:
    return chats(client, model).startswith("Paris is the capital")


def _loaded_message(client: OpenAI, job_id: str) -> str:
    return next(e.message for e in events(client, job_id) if e.message.startswith("Loaded model"))


@pytest.fixture(scope="module")
def chain(live_server: LiveServer) -> dict[str, Any]:
    client = live_server.client()
    tiny_train = (ASSETS / "tiny_train.jsonl").read_bytes()
    sft_file = client.files.create(file=("tiny_train.jsonl", tiny_train), purpose="fine-tune").id
    sft = _job(client, TINY_CHAT, sft_file, {"type": "supervised"}, "sft")

    prefs = upload(client, "prefs.jsonl", [pair(q, ANSWER, "I will not say.") for q in QUESTIONS])
    dpo_hyper = {"beta": 0.2, "n_epochs": 2, "batch_size": 5, "learning_rate_multiplier": 0.1}
    dpo_method = {"type": "dpo", "dpo": {"hyperparameters": dpo_hyper}}
    dpo = _job(client, sft.fine_tuned_model, prefs, dpo_method, "dpo")
    checkpoints = client.fine_tuning.jobs.checkpoints.list(dpo.id).data
    first_checkpoint = min(checkpoints, key=lambda c: c.step_number).fine_tuned_model_checkpoint

    sums = upload(client, "sums.jsonl", SUMS)
    hyper = {"n_epochs": 1, "batch_size": 5, "learning_rate_multiplier": 0.05}
    full_method = {"type": "supervised", "supervised": {"hyperparameters": hyper, "openft": {"training_type": "full"}}}
    full = _job(client, first_checkpoint, sums, full_method, "full")
    lora_method = {"type": "supervised", "supervised": {"hyperparameters": hyper}}
    lora = _job(client, full.fine_tuned_model, sums, lora_method, "lora")
    return {"sft": sft, "dpo": dpo, "checkpoint": first_checkpoint, "full": full, "lora": lora}


def test_each_job_starts_from_its_parent_and_is_served(live_server: LiveServer, chain: dict[str, Any]) -> None:
    client = live_server.client()
    # DPO continued the supervised adapter: its policy and reference both start as that model.
    assert "continuing the parent model's adapter" in _loaded_message(client, chain["dpo"].id)
    first = next(e.data for e in events(client, chain["dpo"].id) if e.type == "metrics")
    assert first["train_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert "(full fine-tuning of the parent model merged into its base)" in _loaded_message(client, chain["full"].id)
    assert "continuing" not in _loaded_message(client, chain["lora"].id)  # a fresh adapter over the full model

    assert not _says_paris(client, TINY_CHAT)
    answers = {name: chats(client, chain[name].fine_tuned_model) for name in ("sft", "dpo", "full", "lora")}
    answers["checkpoint"] = chats(client, chain["checkpoint"])
    assert all(a.startswith("Paris is the capital") for a in answers.values()), answers  # what the first job taught

    listed = {m.id: m for m in client.models.list()}
    for name, parent in (("sft", TINY_CHAT), ("dpo", chain["sft"].fine_tuned_model), ("full", chain["checkpoint"])):
        model = listed[chain[name].fine_tuned_model]
        assert (model.parent, model.root) == (parent, TINY_CHAT)  # type: ignore[attr-defined]


def test_the_dashboard_shows_a_jobs_parent_job_and_base(page: Any, chain: dict[str, Any]) -> None:
    page.goto(f"/jobs/{chain['full'].id}")
    parent_job = page.locator(f"#details a[href='/jobs/{chain['dpo'].id}']")
    parent_job.wait_for()
    details = page.locator("#details").inner_text()
    assert f"parent model\t{chain['checkpoint']}" in details and f"base model\t{TINY_CHAT}" in details
    parent_job.click()
    page.wait_for_url(f"**/jobs/{chain['dpo'].id}")
    page.locator(f"#details a[href='/jobs/{chain['sft'].id}']").wait_for()
    page.goto(f"/jobs/{chain['sft'].id}")
    page.wait_for_function("document.querySelector('#details')?.innerText.includes('base model')")
    sft_details = page.locator("#details").inner_text()
    assert f"base model\t{TINY_CHAT}" in sft_details and "parent" not in sft_details


def _export(server: LiveServer, model: str, output: Path, fmt: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openft", "models", "export", model, "-o", str(output), "-f", fmt],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENFT_HOME": str(server.home), "COLUMNS": "200"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_continued_adapter_exports_as_peft_and_merged(
    live_server: LiveServer, chain: dict[str, Any], tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = chain["dpo"].fine_tuned_model
    _export(live_server, model, tmp_path / "peft", "peft")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == TINY_CHAT  # one adapter over the root base, as served

    _export(live_server, model, tmp_path / "merged", "merged")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello!"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = merged.generate(**prompt, max_new_tokens=len(ANSWER) + 4, do_sample=False)
    assert tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True).startswith(ANSWER)


def test_children_outlive_their_parents_and_deleted_parents_are_404(
    live_server: LiveServer, chain: dict[str, Any]
) -> None:
    client = live_server.client()
    sums = upload(client, "sums.jsonl", SUMS)
    for gone in ("ft:openft/tiny-chat:personal::nosuchid", f"{chain['dpo'].fine_tuned_model}:ckpt-step-999"):
        with pytest.raises(openai.NotFoundError) as unknown:
            client.fine_tuning.jobs.create(model=gone, training_file=sums)
        assert unknown.value.code == "model_not_found" and unknown.value.param == "model"

    for parent, child in (("sft", "dpo"), ("dpo", "full"), ("full", "lora")):
        client.models.delete(chain[parent].fine_tuned_model)
        with pytest.raises(openai.NotFoundError) as deleted:
            client.fine_tuning.jobs.create(model=chain[parent].fine_tuned_model, training_file=sums)
        assert deleted.value.code == "model_not_found"
        assert _says_paris(client, chain[child].fine_tuned_model), child
    with pytest.raises(openai.NotFoundError):  # the DPO model's checkpoints went with it
        client.fine_tuning.jobs.create(model=chain["checkpoint"], training_file=sums)
