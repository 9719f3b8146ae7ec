"""Packed batches (training/packing.py): examples in one row must not see each other."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from openft.data.chat_data import IGNORE_INDEX, TokenizedExample, tokenize_example
from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import load_model_and_tokenizer
from openft.training.packed_attention import PACKED_SDPA, packed_kwargs, use_packed_attention
from openft.training.packing import pack
from openft.training.supervised_loss import batch_loss

ATTENTIONS = ["sdpa", PACKED_SDPA]
"""transformers' SDPA with the mask it derives from position ids, and the recipe's per-example attention."""

CONVERSATIONS = [
    [("user", "What is the capital of France?"), ("assistant", "Paris is the capital of France.")],
    [("system", "Be brief."), ("user", "2+2?"), ("assistant", "4")],
    [("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Bye"), ("assistant", "Goodbye.")],
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    model, tokenizer = load_model_and_tokenizer(base, tmp_path_factory.mktemp("models"))
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def examples(tiny: tuple[Any, Any]) -> list[TokenizedExample]:
    _, tokenizer = tiny
    return [
        tokenize_example({"messages": [{"role": r, "content": c} for r, c in turns]}, tokenizer)
        for turns in CONVERSATIONS
    ]


@contextmanager
def attention(model: Any, name: str) -> Iterator[None]:
    """Run ``model`` (the shared transformers model) with attention implementation ``name``."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def separate_logits(model: Any, examples: list[TokenizedExample]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0] for e in examples])


def test_pack_restarts_positions_and_shifts_labels_within_each_example(
    examples: list[TokenizedExample],
) -> None:
    batch = pack(examples)
    lengths = [len(e.input_ids) for e in examples]
    assert batch.input_ids.shape == batch.position_ids.shape == batch.targets.shape == (1, sum(lengths))
    assert batch.n_tokens == sum(lengths)
    assert batch.input_ids[0].tolist() == [t for e in examples for t in e.input_ids]
    assert batch.position_ids[0].tolist() == [p for n in lengths for p in range(n)]
    assert batch.targets[0].tolist() == [t for e in examples for t in [*e.labels[1:], IGNORE_INDEX]]


@pytest.mark.parametrize("name", ATTENTIONS)
def test_packed_row_with_use_cache_false_equals_separate_forwards(
    tiny: tuple[Any, Any], examples: list[TokenizedExample], name: str
) -> None:
    model, _ = tiny
    batch = pack(examples)
    with torch.no_grad(), attention(model, name):
        packed = model(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,
            use_cache=False,
            **packed_kwargs(list(batch.lengths), "cpu"),
        ).logits[0]
    assert torch.allclose(packed, separate_logits(model, examples), atol=1e-5, rtol=0)


def test_packed_attention_is_set_only_on_plain_causal_sdpa_models(tiny: tuple[Any, Any]) -> None:
    model, _ = tiny
    try:
        assert use_packed_attention(model)
        assert model.config._attn_implementation == PACKED_SDPA
    finally:
        model.set_attn_implementation("sdpa")
    model.config.sliding_window = 16  # a window the per-example attention does not implement
    try:
        assert not use_packed_attention(model)
        assert model.config._attn_implementation == "sdpa"
    finally:
        model.config.sliding_window = None


def test_packed_attention_refuses_a_padded_batch(tiny: tuple[Any, Any], examples: list[TokenizedExample]) -> None:
    model, _ = tiny
    ids = torch.tensor([examples[0].input_ids, examples[0].input_ids])
    with torch.no_grad(), attention(model, PACKED_SDPA), pytest.raises(ValueError, match="one packed row"):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)


def test_packed_row_with_a_cache_attends_across_examples(
    tiny: tuple[Any, Any], examples: list[TokenizedExample]
) -> None:
    # The pitfall the recipe avoids (perf-anchors §5): with the config's use_cache=True, transformers builds
    # a cache and skips deriving the block-diagonal mask from position_ids. If a transformers release stops
    # doing that, this test may go; the one above is the contract.
    model, _ = tiny
    assert model.config.use_cache
    batch = pack(examples)
    with torch.no_grad():
        packed = model(input_ids=batch.input_ids, position_ids=batch.position_ids).logits[0]
    assert (packed - separate_logits(model, examples)).abs().max() > 1e-3


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
@pytest.mark.parametrize("name", ATTENTIONS)
@pytest.mark.parametrize("wrap", ["plain", "lora"])
def test_batch_loss_of_a_packed_row_is_the_token_weighted_mean_of_example_losses(
    tiny: tuple[Any, Any], examples: list[TokenizedExample], wrap: str, name: str
) -> None:
    model, _ = tiny
    base = model
    if wrap == "lora":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(0)
        model = get_peft_model(
            model,
            LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False),
        )  # nonzero B: the adapter matters
    try:
        with torch.no_grad(), attention(base, name):
            loss, n_tokens, n_correct = batch_loss(model, pack(examples))
            singles = [batch_loss(model, pack([e])) for e in examples]
        assert (
            n_tokens
            == sum(n for _, n, _ in singles)
            == sum(len(e.input_ids) - 1 - e.labels[1:].count(IGNORE_INDEX) for e in examples)
        )
        assert n_correct == sum(c for _, _, c in singles)
        expected = sum(single.item() * n for single, n, _ in singles) / n_tokens
        assert loss.item() == pytest.approx(expected, abs=1e-5)
        # And it is the ordinary next-token cross-entropy over the labelled positions.
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([examples[0].input_ids]), use_cache=False).logits[0, :-1]
        labels = torch.tensor(examples[0].labels[1:])
        reference = torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        assert singles[0][0].item() == pytest.approx(reference.item(), abs=1e-5)
    finally:
        if wrap == "lora":
            model.unload()  # leave the shared module-scoped model as it was


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
@pytest.mark.parametrize("name", ATTENTIONS)
def test_packed_training_step_equals_a_padded_batch_in_loss_accuracy_and_gradients(
    tiny: tuple[Any, Any], examples: list[TokenizedExample], name: str
) -> None:
    # The unpacked reference is the ordinary padded batch with an attention mask (what TRL's default does).
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    torch.manual_seed(0)
    lora = get_peft_model(
        model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    )
    trainable = [p for p in lora.parameters() if p.requires_grad]
    try:
        # A few steps first, so the model gets some tokens right and accuracy is worth comparing.
        optimizer = torch.optim.AdamW(trainable, lr=3e-2)
        with attention(model, name):
            for _ in range(40):
                batch_loss(lora, pack(examples))[0].backward()
                optimizer.step()
                optimizer.zero_grad()
            loss, n_tokens, n_correct = batch_loss(lora, pack(examples))
            packed_grads = torch.autograd.grad(loss, trainable)

        width = max(len(e.input_ids) for e in examples)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([e.input_ids + [pad] * (width - len(e.input_ids)) for e in examples])
        mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in examples])
        labels = torch.tensor([e.labels + [IGNORE_INDEX] * (width - len(e.labels)) for e in examples])
        logits = lora(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[:, :-1]
        targets = labels[:, 1:]
        padded_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX)
        padded_grads = torch.autograd.grad(padded_loss, trainable)
        trained = targets != IGNORE_INDEX
        padded_correct = int((logits.argmax(-1)[trained] == targets[trained]).sum())

        assert n_tokens == int(trained.sum())
        assert 0 < n_correct < n_tokens, "accuracy must be informative for the comparison to mean anything"
        assert loss.item() == pytest.approx(padded_loss.item(), abs=1e-5)
        assert n_correct / n_tokens == pytest.approx(padded_correct / n_tokens, abs=1e-9)
        for packed_grad, padded_grad in zip(packed_grads, padded_grads, strict=True):
            assert torch.allclose(packed_grad, padded_grad, atol=1e-5, rtol=1e-4)
    finally:
        lora.unload()


@pytest.mark.parametrize("amx", [False, True])
def test_bf16_rows_attend_in_fp32_except_long_wide_examples_on_amx(monkeypatch: pytest.MonkeyPatch, amx: bool) -> None:
    """On a CPU, bf16 attention only where it is faster (AMX, head size >= 64, >= 512 tokens), fp32
    elsewhere; the output is the same attention either way, in the row's dtype."""
    from openft.training import packed_attention

    monkeypatch.setattr(packed_attention, "_cpu_has_amx", lambda: amx)
    computed_in: list[torch.dtype] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(query: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        computed_in.append(query.dtype)
        return sdpa(query, *args, **kwargs)

    monkeypatch.setattr(packed_attention.F, "scaled_dot_product_attention", recording_sdpa)
    lengths, heads, head_dim = [600, 40, 7], 2, 64
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, sum(lengths), head_dim, generator=generator).bfloat16() for _ in range(3))
    out, _ = packed_attention.packed_sdpa_attention(torch.nn.Module(), q, k, v, None, **packed_kwargs(lengths, "cpu"))

    long_dtype = torch.bfloat16 if amx else torch.float32
    assert computed_in == [long_dtype, torch.float32, torch.float32]
    assert out.dtype == torch.bfloat16 and out.shape == (1, sum(lengths), heads, head_dim)
    expected = torch.cat(
        [
            sdpa(qe.float(), ke.float(), ve.float(), is_causal=True)
            for qe, ke, ve in zip(q.split(lengths, 2), k.split(lengths, 2), v.split(lengths, 2), strict=True)
        ],
        dim=2,
    ).transpose(1, 2)
    assert (out.float() - expected).abs().max() <= 1e-2  # bf16 rounding of values below ~2
    assert not packed_attention._cpu_bf16_attention_pays(600, 16)  # tiny-chat's heads: fp32 at any length
