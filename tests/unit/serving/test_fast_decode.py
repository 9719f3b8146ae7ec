"""The lean forward pass (``serving/fast_decode.py``) against transformers' forward on tiny-chat: the same
logits and greedy tokens with fp32 and fp16 weights, for the base model, an adapter and a checkpoint's
adapter, alone and mixed in one batch; fp16 and int8 weights within their stated tolerances."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import pytest
import torch

from openft.models.catalog import TINY_CHAT, BaseModel, find_base_model
from openft.serving.backend import SamplingParams, ServedModel
from openft.serving.fast_decode import FastLlama
from openft.serving.hf import HFBackend
from openft.serving.pool import decode_plan

PROMPTS = [
    [{"role": "user", "content": "Say hi."}],
    [{"role": "user", "content": "Write two sentences about the sea, please."}],
]
GREEDY = SamplingParams(max_tokens=32, temperature=0)


@pytest.fixture(scope="module")
def tiny() -> BaseModel:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return base


def _adapter(tiny: BaseModel, models_dir: Path, out: Path, seed: int) -> str:
    from peft import LoraConfig, get_peft_model

    from openft.models.loader import load_model_and_tokenizer

    torch.manual_seed(seed)
    model, _ = load_model_and_tokenizer(tiny, models_dir)
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft 0.21 reads transformers' deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        get_peft_model(model, config).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def served(tiny: BaseModel, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[ServedModel]:
    """The base model, a fine-tuned model and one of its checkpoints (each with its own adapter)."""
    root = tmp_path_factory.mktemp("fast-adapters")
    fine_tuned = "ft:openft/tiny-chat:local:fast:ftjob-1"
    return [
        ServedModel(id=TINY_CHAT, base=tiny),
        ServedModel(id=fine_tuned, base=tiny, adapter_dir=_adapter(tiny, models_dir, root / "final", 1)),
        ServedModel(
            id=f"{fine_tuned}:ckpt-step-2", base=tiny, adapter_dir=_adapter(tiny, models_dir, root / "ckpt", 2)
        ),
    ]


@pytest.fixture(scope="module")
def plain(models_dir: Path) -> HFBackend:
    return HFBackend(models_dir, device="cpu", decode="plain")


@pytest.fixture(scope="module")
def fast(models_dir: Path) -> HFBackend:
    return HFBackend(models_dir, device="cpu", decode="fast")


@pytest.fixture(scope="module")
def fast_fp16(models_dir: Path) -> HFBackend:
    return HFBackend(models_dir, device="cpu", decode="fast-fp16")


def test_auto_picks_the_lean_forward_on_cpu_and_fp16_only_for_large_models(fast: HFBackend, tiny: BaseModel) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    model = fast.pool.get(tiny).model
    assert decode_plan("auto", torch.device("cpu"), model) == "fp32"  # tiny-chat: ~200k parameters
    assert decode_plan("auto", torch.device("cuda"), model) is None
    assert decode_plan("plain", torch.device("cpu"), model) is None
    assert decode_plan("fast-int8", torch.device("cpu"), model) == "int8"
    assert decode_plan("fast-fp16", torch.device("cpu"), model) == "fp16"
    config = LlamaConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=2, vocab_size=32000)
    with torch.device("meta"):
        large = LlamaForCausalLM(config)  # 256 MB of fp32 linear weights, none allocated
    assert FastLlama.linear_weight_bytes(large) == 4 * (2 * (4 * 1024**2 + 3 * 1024 * 4096) + 32000 * 1024)
    assert decode_plan("auto", torch.device("cpu"), large) == "fp16"
    with pytest.raises(ValueError, match="unknown decode mode"):
        decode_plan("turbo", torch.device("cpu"), model)
    assert fast.pool.get(tiny).fast is not None


@pytest.mark.parametrize("weights", ["fp32", "fp16"])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["base", "adapter", "checkpoint"])
def test_greedy_answers_are_the_tokens_of_transformers_forward(
    plain: HFBackend, fast: HFBackend, fast_fp16: HFBackend, served: list[ServedModel], which: int, weights: str
) -> None:
    model = served[which]
    lean = fast if weights == "fp32" else fast_fp16
    assert lean.pool.get(model.base).fast.precision == weights  # type: ignore[union-attr]  # None fails here
    for messages in PROMPTS:
        expected = plain.chat(model, messages, GREEDY)
        got = lean.chat(model, messages, GREEDY)
        assert got.choices[0].text == expected.choices[0].text
        assert got.completion_tokens == expected.completion_tokens


def test_mixed_batch_of_base_adapter_and_checkpoint_matches_each_alone(
    plain: HFBackend, fast: HFBackend, served: list[ServedModel]
) -> None:
    expected = {(m.id, i): plain.chat(m, p, GREEDY).choices[0].text for m in served for i, p in enumerate(PROMPTS)}
    got: dict[tuple[str, int], str] = {}
    start = threading.Barrier(len(expected))

    def ask(model: ServedModel, i: int) -> None:
        start.wait()
        got[(model.id, i)] = fast.chat(model, PROMPTS[i], GREEDY).choices[0].text

    threads = [threading.Thread(target=ask, args=(m, i)) for m in served for i in range(len(PROMPTS))]
    before = dict(fast.batch_stats().get(TINY_CHAT, {}))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert got == expected
    assert fast.batch_stats()[TINY_CHAT]["mixed_steps"] > before.get("mixed_steps", 0)


def _padded_batch(tokenizer: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    texts = ["Hello there, how are you today?", "Hi"]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]  # type: ignore[operator]
    width = max(map(len, encoded))
    ids = torch.tensor([[0] * (width - len(e)) + e for e in encoded])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def test_logits_match_transformers_on_a_left_padded_batch_then_a_decode_step(plain: HFBackend, tiny: BaseModel) -> None:
    loaded = plain.pool.get(tiny)
    ids, mask, positions = _padded_batch(loaded.tokenizer)
    lean = FastLlama(loaded.model, loaded.lora, "fp32")
    with torch.inference_mode():
        reference = loaded.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache = lean.new_cache()
        ours = lean.forward(ids, mask, positions, cache)
        assert torch.allclose(ours, reference.logits[:, -1].float(), atol=1e-5)
        step_ids = reference.logits[:, -1].argmax(-1, keepdim=True)
        step_mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1)
        step_positions = positions[:, -1:] + 1
        following = loaded.model(
            input_ids=step_ids,
            attention_mask=step_mask,
            position_ids=step_positions,
            cache=reference.past_key_values,
        )
        ours_next = lean.forward(step_ids, step_mask, step_positions, cache)
    assert torch.allclose(ours_next, following.logits[:, -1].float(), atol=1e-5)


def test_int8_weights_stay_within_their_stated_tolerance(plain: HFBackend, tiny: BaseModel) -> None:
    """int8 per-channel weights: logits within 5% of their spread of fp32's, and the same top token on
    at least 90% of positions (README states what SmolLM2 measures)."""
    loaded = plain.pool.get(tiny)
    ids, mask, positions = _padded_batch(loaded.tokenizer)
    exact = FastLlama(loaded.model, loaded.lora, "fp32")
    quantized = FastLlama(loaded.model, loaded.lora, "int8")
    assert quantized.weight_bytes < sum(p.numel() for p in loaded.model.parameters()) * 4 // 3
    agree = total = 0
    with torch.inference_mode():
        for length in range(2, ids.shape[1] + 1):
            a = exact.forward(ids[:, :length], mask[:, :length], positions[:, :length], exact.new_cache())
            b = quantized.forward(ids[:, :length], mask[:, :length], positions[:, :length], quantized.new_cache())
            assert float((a - b).abs().max()) < 0.05 * float(a.max() - a.min())
            agree += int((a.argmax(-1) == b.argmax(-1)).sum())
            total += a.shape[0]
    assert agree >= 0.9 * total


def test_fp16_weights_stay_within_their_stated_tolerance(plain: HFBackend, tiny: BaseModel) -> None:
    """fp16 weights with fp32 activations: logits within 0.5% of their spread of fp32's and the same top
    token everywhere (SmolLM2 measures 0.1% and identical greedy answers, ``benchmarks/README.md``)."""
    loaded = plain.pool.get(tiny)
    ids, mask, positions = _padded_batch(loaded.tokenizer)
    exact = FastLlama(loaded.model, loaded.lora, "fp32")
    half = FastLlama(loaded.model, loaded.lora, "fp16")
    assert half.weight_bytes * 2 == FastLlama.linear_weight_bytes(loaded.model)
    with torch.inference_mode():
        for length in range(2, ids.shape[1] + 1):
            a = exact.forward(ids[:, :length], mask[:, :length], positions[:, :length], exact.new_cache())
            b = half.forward(ids[:, :length], mask[:, :length], positions[:, :length], half.new_cache())
            assert float((a - b).abs().max()) < 0.005 * float(a.max() - a.min())
            assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_cache_written_in_place_follows_transformers_through_joins_leaves_and_growth(
    plain: HFBackend, tiny: BaseModel
) -> None:
    """The lean forward's key/value buffers (written in place, grown ``_ROOM`` positions at a time) against
    transformers' concatenated cache, through what the engine does to a batch: rows joining (``merge``),
    rows leaving and padding columns trimmed (``select``), and more steps than the first buffer holds."""
    from transformers import DynamicCache

    from openft.serving import batch_cache
    from openft.serving.fast_decode import _ROOM

    loaded = plain.pool.get(tiny)
    lean = FastLlama(loaded.model, loaded.lora, "fp32")
    ids, mask, positions = _padded_batch(loaded.tokenizer)
    caches = {"lean": lean.new_cache(), "reference": DynamicCache()}
    masks = dict.fromkeys(caches, mask)

    def forward(
        name: str, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: object
    ) -> torch.Tensor:
        if name == "lean":
            return lean.forward(ids, mask, positions, cache)  # type: ignore[arg-type]  # a KVCache here
        out = loaded.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache)
        return out.logits[:, -1].float()

    with torch.inference_mode():
        logits = {name: forward(name, ids, mask, positions, cache) for name, cache in caches.items()}
        positions = positions[:, -1:] + 1
        for step in range(_ROOM + 40):
            if step == 10:  # two rows join the batch
                new_ids, new_mask, new_positions = _padded_batch(loaded.tokenizer)
                for name in caches:
                    cache = lean.new_cache() if name == "lean" else DynamicCache()
                    first = forward(name, new_ids, new_mask, new_positions, cache)
                    masks[name] = batch_cache.merge(caches[name], masks[name], cache, new_mask)
                    logits[name] = torch.cat([logits[name], first])
                positions = torch.cat([positions, new_positions[:, -1:] + 1])
            if step == 30:  # the longest row and one other leave: the shared padding columns go
                for name in caches:
                    masks[name] = batch_cache.select(caches[name], masks[name], [1, 3])
                    logits[name] = logits[name][[1, 3]]
                positions = positions[[1, 3]]
            assert torch.allclose(logits["lean"], logits["reference"], atol=1e-5), step
            chosen = logits["reference"].argmax(-1, keepdim=True)
            for name, cache in caches.items():
                masks[name] = torch.cat([masks[name], torch.ones(len(chosen), 1, dtype=mask.dtype)], dim=1)
                logits[name] = forward(name, chosen, masks[name], positions, cache)
            positions = positions + 1
    assert caches["lean"].layers[0].keys.shape == caches["reference"].layers[0].keys.shape
