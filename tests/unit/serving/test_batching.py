"""HFBackend's batching engine and adapter cache on openft/tiny-chat: requests for different adapters
decoded together on one base, answers independent of the batch, rows dropped alone, LRU eviction."""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

import pytest

from openft.models.catalog import TINY_CHAT, BaseModel, find_base_model
from openft.serving.backend import Generation, SamplingParams, ServedModel
from openft.serving.hf import HFBackend

HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def tiny() -> BaseModel:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return base


def _adapter(tiny: BaseModel, models_dir: Path, out: Path, seed: int) -> str:
    """A random (non-zero) LoRA adapter for tiny-chat, saved as a fine-tuning job saves one."""
    import torch
    from peft import LoraConfig, get_peft_model

    from openft.models.loader import load_model_and_tokenizer

    torch.manual_seed(seed)
    model, _ = load_model_and_tokenizer(tiny, models_dir)
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        get_peft_model(model, config).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def fine_tuned(tiny: BaseModel, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[ServedModel]:
    root = tmp_path_factory.mktemp("adapters")
    return [
        ServedModel(
            id=f"ft:openft/tiny-chat:personal:a{i}:abcd123{i}",
            base=tiny,
            adapter_dir=_adapter(tiny, models_dir, root / f"a{i}", seed=i),
        )
        for i in range(3)
    ]


def _concurrently(backend: HFBackend, jobs: list[tuple[ServedModel, SamplingParams]]) -> list[Generation]:
    results: list[Generation | None] = [None] * len(jobs)
    gate = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        gate.wait()
        results[i] = backend.chat(jobs[i][0], HI, jobs[i][1])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def test_mixed_adapters_share_batches_and_give_the_answers_they_give_alone(
    models_dir: Path, tiny: BaseModel, fine_tuned: list[ServedModel]
) -> None:
    # A long window so that all requests land in the first prefill.
    backend = HFBackend(models_dir, device="cpu", batch_window_ms=500)
    base = ServedModel(id=TINY_CHAT, base=tiny)
    models = [base, *fine_tuned]
    jobs = [
        (model, SamplingParams(max_tokens=12 + 3 * i, temperature=0.8 + 0.1 * i, seed=40 + i, top_p=0.95))
        for i, model in enumerate(models)
    ]
    together = _concurrently(backend, jobs)
    stats = backend.batch_stats()[TINY_CHAT]
    assert stats["mixed_steps"] > 0 and stats["max_rows"] == len(models)

    alone = [backend.chat(model, HI, params) for model, params in jobs]
    assert [g.choices[0].text for g in together] == [g.choices[0].text for g in alone]
    assert [g.completion_tokens for g in together] == [g.completion_tokens for g in alone]
    assert len({g.choices[0].text for g in alone}) == len(models)  # the adapters really differ
    assert backend.base_loads[TINY_CHAT] == 1
    assert all(backend.adapter_loads[m.id] == 1 for m in fine_tuned)
    assert backend.loaded() == {TINY_CHAT: sorted(m.id for m in fine_tuned)}


def test_a_cancelled_stream_leaves_the_other_rows_running(
    models_dir: Path, tiny: BaseModel, fine_tuned: list[ServedModel]
) -> None:
    backend = HFBackend(models_dir, device="cpu", batch_window_ms=500)
    params = SamplingParams(max_tokens=300, temperature=1.0, seed=9)
    cancel = threading.Event()
    results: list[Generation] = []
    kept = threading.Thread(target=lambda: results.append(backend.chat(fine_tuned[0], HI, params)))
    kept.start()
    dropped = backend.stream_chat(fine_tuned[1], HI, params, cancel=cancel)
    first = next(dropped)
    assert first.usage is None
    cancel.set()
    rest = list(dropped)
    kept.join(timeout=600)

    assert all(d.usage is None and d.finish_reason is None for d in rest)
    (whole,) = results
    assert backend.batch_stats()[TINY_CHAT]["max_rows"] == 2  # they did share a batch
    assert whole == backend.chat(fine_tuned[0], HI, params)  # the same answer as alone, to its end
    assert len(rest) < whole.completion_tokens
    deadline = time.monotonic() + 10  # the engine drops finished rows just after it sends their end
    while backend.batch_stats()[TINY_CHAT]["active_rows"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.batch_stats()[TINY_CHAT]["active_rows"] == 0


def test_adapters_beyond_the_limits_are_evicted_least_recently_used(
    models_dir: Path, tiny: BaseModel, fine_tuned: list[ServedModel]
) -> None:
    greedy = SamplingParams(max_tokens=4, temperature=0)
    backend = HFBackend(models_dir, device="cpu", max_adapters=2)
    first, second, third = fine_tuned
    answer = backend.chat(first, HI, greedy)
    backend.chat(second, HI, greedy)
    backend.chat(first, HI, greedy)  # now second is the least recently used
    backend.chat(third, HI, greedy)
    assert backend.loaded() == {TINY_CHAT: sorted([first.id, third.id])}
    backend.chat(second, HI, greedy)
    assert backend.loaded() == {TINY_CHAT: sorted([second.id, third.id])}
    assert backend.adapter_loads[second.id] == 2
    assert backend.chat(first, HI, greedy) == answer  # reloaded on demand, same weights
    assert backend.base_loads[TINY_CHAT] == 1

    # A byte budget: one adapter's weights fit, two do not.
    one = backend.adapter_bytes()[TINY_CHAT] / 2
    assert one > 0
    small = HFBackend(models_dir, device="cpu", adapter_budget_mb=1.5 * one / 2**20)
    small.chat(first, HI, greedy)
    small.chat(second, HI, greedy)
    assert small.loaded() == {TINY_CHAT: [second.id]}
    assert small.adapter_bytes()[TINY_CHAT] == pytest.approx(one)


def test_unloading_a_fine_tuned_model_frees_it_and_its_checkpoints(
    models_dir: Path, tiny: BaseModel, fine_tuned: list[ServedModel]
) -> None:
    greedy = SamplingParams(max_tokens=4, temperature=0)
    backend = HFBackend(models_dir, device="cpu")
    model, other = fine_tuned[0], fine_tuned[1]
    checkpoint = ServedModel(id=f"{model.id}:ckpt-step-3", base=tiny, adapter_dir=model.adapter_dir)
    for served in (model, checkpoint, other):
        backend.chat(served, HI, greedy)
    before = backend.adapter_bytes()[TINY_CHAT]

    backend.unload(model.id)
    assert backend.loaded() == {TINY_CHAT: [other.id]}
    assert backend.adapter_bytes()[TINY_CHAT] == pytest.approx(before / 3)
