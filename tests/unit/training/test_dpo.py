"""DPO: the loss against a hand computation, preference lines to tokens, and per-answer log-probabilities
(training/dpo_loss.py, data/preference_data.py), on tiny-chat."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from openft.data.chat_data import IGNORE_INDEX
from openft.data.chat_messages import TrainingDataError
from openft.data.preference_data import load_preference_pairs, tokenize_preference
from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import load_model_and_tokenizer
from openft.training.dpo_loss import dpo_loss, reward_stats, sequence_logps
from openft.training.packed_attention import PACKED_SDPA


def test_dpo_loss_matches_a_hand_computation() -> None:
    # Two pairs; log-probabilities chosen so the numbers are easy to follow.
    policy_chosen = torch.tensor([-10.0, -4.0], requires_grad=True)
    policy_rejected = torch.tensor([-12.0, -3.0])
    reference_chosen = torch.tensor([-11.0, -5.0])
    reference_rejected = torch.tensor([-11.0, -5.0])
    beta = 0.5
    out = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)

    # Pair 1: rewards 0.5 * (1) = 0.5 and 0.5 * (-1) = -0.5, margin 1.
    # Pair 2: rewards 0.5 * (1) = 0.5 and 0.5 * (2) = 1.0, margin -0.5.
    assert out.chosen_rewards.tolist() == [0.5, 0.5]
    assert out.rejected_rewards.tolist() == [-0.5, 1.0]
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(0.5))) / 2  # -log sigmoid(m) = log(1+e^-m)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.stats() == pytest.approx({"chosen": 0.5, "rejected": 0.25, "margin": 0.25, "accuracy": 0.5})

    # d loss / d policy_chosen_i = -beta * sigmoid(-margin_i) / n_pairs
    out.loss.backward()
    sigmoid = [1 / (1 + math.exp(1.0)), 1 / (1 + math.exp(-0.5))]
    assert policy_chosen.grad is not None
    assert policy_chosen.grad.tolist() == pytest.approx([-beta * s / 2 for s in sigmoid], rel=1e-6)


def test_dpo_loss_is_log_two_when_the_policy_is_the_reference() -> None:
    logps = torch.tensor([-7.0, -3.5, -20.0])
    out = dpo_loss(logps, logps - 1, logps, logps - 1, beta=0.1)
    assert out.loss.item() == pytest.approx(math.log(2))
    assert reward_stats(out.chosen_rewards, out.rejected_rewards) == {
        "chosen": 0.0,
        "rejected": 0.0,
        "margin": 0.0,
        "accuracy": 0.0,
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    model, tokenizer = load_model_and_tokenizer(base, tmp_path_factory.mktemp("models"))
    model.eval()
    return model, tokenizer


def preference(question: str, good: str, bad: str, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": "Be brief."}, *(history or []), {"role": "user", "content": question}]
    return {
        "input": {"messages": messages},
        "preferred_output": [{"role": "assistant", "content": good}],
        "non_preferred_output": [{"role": "assistant", "content": bad}],
    }


def labelled_text(tokenizer: Any, input_ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([t for t, label in zip(input_ids, labels, strict=True) if label != IGNORE_INDEX])


def test_only_the_output_message_carries_labels(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]
    pair = tokenize_preference(preference("Capital of France?", "Paris.", "London!", history), tokenizer, line=3)
    assert pair.line == 3
    assert labelled_text(tokenizer, pair.chosen.input_ids, pair.chosen.labels) == "Paris.<|im_end|>\n"
    assert labelled_text(tokenizer, pair.rejected.input_ids, pair.rejected.labels) == "London!<|im_end|>\n"
    # Both sides share the prompt, earlier assistant turn included (as history, not trained), token for token.
    n_prompt = next(i for i, label in enumerate(pair.chosen.labels) if label != IGNORE_INDEX)
    assert pair.chosen.input_ids[:n_prompt] == pair.rejected.input_ids[:n_prompt]
    prompt = tokenizer.decode(pair.chosen.input_ids[:n_prompt])
    assert "Hello there" in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_preference_files_name_the_bad_line_and_truncate_long_pairs(tmp_path: Path, tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    path = tmp_path / "pairs.jsonl"
    lines = [preference("Q?", "short", "also short"), preference("Q?", "a" * 300, "b")]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
    pairs, truncated = load_preference_pairs(path, tokenizer, max_seq_len=100)
    assert [p.line for p in pairs] == [1, 2] and truncated == [2]
    assert len(pairs[1].chosen.input_ids) == 100 and len(pairs[1].rejected.input_ids) < 100

    path.write_text(json.dumps(lines[0]) + "\n" + json.dumps({"input": {"messages": []}}) + "\n")
    with pytest.raises(TrainingDataError, match=r"pairs\.jsonl line 2"):
        load_preference_pairs(path, tokenizer, max_seq_len=100)


@pytest.fixture(params=["sdpa", PACKED_SDPA])
def attending(request: pytest.FixtureRequest, tiny: tuple[Any, Any]) -> Iterator[tuple[Any, Any]]:
    """tiny-chat with transformers' mask from the position ids, then with the recipe's per-answer attention."""
    model, _ = tiny
    model.set_attn_implementation(request.param)
    yield tiny
    model.set_attn_implementation("sdpa")


def test_packed_sequence_logps_equal_one_forward_per_answer(attending: tuple[Any, Any]) -> None:
    model, tokenizer = attending
    pairs = [
        tokenize_preference(preference("Capital of France?", "Paris.", "I do not know, sorry."), tokenizer),
        tokenize_preference(preference("Two plus two?", "Four.", "Five."), tokenizer),
    ]
    with torch.no_grad():
        packed, n_chosen, _ = sequence_logps(model, pairs, torch.device("cpu"))
        expected = []
        for side in ("chosen", "rejected"):
            row = []
            for pair in pairs:
                seq = getattr(pair, side)
                logits = model(input_ids=torch.tensor([seq.input_ids]), use_cache=False).logits[0, :-1]
                targets = torch.tensor(seq.labels[1:])
                where = targets != IGNORE_INDEX
                logps = torch.log_softmax(logits.float(), dim=-1)[where].gather(-1, targets[where].unsqueeze(-1))
                row.append(float(logps.sum()))
            expected.append(row)
    assert packed.shape == (2, 2)
    assert packed.tolist() == [pytest.approx(row, abs=1e-4) for row in expected]
    assert n_chosen == sum(sum(1 for label in p.chosen.labels[1:] if label != IGNORE_INDEX) for p in pairs)
