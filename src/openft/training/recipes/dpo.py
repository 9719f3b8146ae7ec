"""Direct Preference Optimization (DPO): the ``dpo`` method of a fine-tuning job.

Run it through the training entry point (``python -m openft.training SPEC.json``), which calls
``run(spec, events)``. Each line of ``spec.training_file`` holds a prompt and two answers, the
preferred and the non-preferred one. The policy is trained so that, relative to the reference
model, it raises the log-probability of the preferred answer more than that of the other:

    reward(answer) = beta * (log p_policy(answer | prompt) - log p_reference(answer | prompt))
    loss = -log sigmoid(reward(preferred) - reward(non_preferred))

The reference is the model before training. Its log-probabilities never change, so they are
computed once, before the first step: with LoRA on the base with the adapter disabled, with full
fine-tuning on the weights as loaded. Neither needs a second copy of the model in memory.

Each optimizer step packs ``spec.batch_size`` pairs (both sides of each) into one row, exactly like
the supervised recipe (``training/packing.py``), and runs the LM head only where an answer token is
predicted. Events, checkpoints and ``results.csv`` are those of the supervised recipe plus the
reward statistics: ``{split}_rewards_chosen``, ``_rejected``, ``_margin`` (chosen minus rejected)
and ``_accuracy`` (share of pairs with a positive margin). The optimizer, full training states,
pause (SIGTERM) and resume are the shared loop's (``training/loop.py``); a resumed run recomputes
the reference values the same way.
"""

from __future__ import annotations

import time
from typing import Any

from openft.data.chat_messages import TrainingDataError
from openft.data.preference_data import PreferencePair, has_labels, load_preference_pairs
from openft.training.common import load_model, report_skipped_lines, validation_sample
from openft.training.dpo_loss import dpo_loss, evaluate, reference_logps, reference_tensors, sequence_logps
from openft.training.events import EventWriter
from openft.training.loop import StepResult, TrainingLoop, epoch_steps, interval
from openft.training.packing import prepare_for_packed_rows
from openft.training.spec import TrainingSpec

REWARD_STATS = ("chosen", "rejected", "margin", "accuracy")
REWARD_COLUMNS = [f"{split}_rewards_{name}" for split in ("train", "valid") for name in REWARD_STATS]
"""The columns ``results.csv`` has after OpenAI's five."""


def run(spec: TrainingSpec, events: EventWriter) -> None:
    """Train ``spec.base_model`` with DPO on the preference pairs of ``spec.training_file``.

    Raises:
        TrainingDataError: A line cannot be tokenized, or no pair has answer tokens to train on.
        ValueError: The base model, the training type or ``spec.dtype`` is unknown.
    """
    started = time.perf_counter()
    # 1. The model (LoRA or full), then the pairs.
    base, trainable = load_model(spec, events)
    model, tokenizer, device = trainable.model, trainable.tokenizer, trainable.device
    prepare_for_packed_rows(model)
    max_seq_len = spec.max_seq_len or base.context_length
    train = _load(spec.training_file, tokenizer, max_seq_len, events, "training")
    if not train:
        raise TrainingDataError("The training file has no preference pair to train on.", param="training_file")
    valid = _load(spec.validation_file, tokenizer, max_seq_len, events, "validation") if spec.validation_file else []
    sample_idx = validation_sample(len(valid), spec.seed)

    # 2. Reference log-probabilities, once: the reference model never changes. A resumed run
    # recomputes them the same way, from the weights as loaded or with the adapter disabled.
    ref_started = time.perf_counter()
    train_refs = reference_logps(trainable, train, spec.batch_size)
    valid_refs = reference_logps(trainable, valid, spec.batch_size)
    n_tokens = sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in train)
    events.message(
        f"Training on {len(train)} preference pairs ({n_tokens:,} tokens), {spec.n_epochs} epochs of "
        f"{epoch_steps(len(train), spec.batch_size)} steps, batch size {spec.batch_size}, beta {spec.beta:g}"
        + (f"; validating on {len(valid)} pairs" if valid else "")
        + f"; reference log-probabilities computed in {time.perf_counter() - ref_started:.1f}s",
        data={
            "beta": spec.beta,
            "n_pairs": len(train),
            # How much the reference already prefers the preferred answers of the validation pairs:
            # mean log p(preferred) - log p(non_preferred), the baseline the rewards move away from.
            "reference_valid_logp_margin": (
                sum(c - r for c, r in valid_refs) / len(valid_refs) if valid_refs else None
            ),
        },
    )

    # 3. Train.
    loop = TrainingLoop(spec, events, trainable, len(train), started=started)
    eval_every = interval(spec.eval_every, loop.total_steps)

    def train_step(indices: list[int]) -> StepResult:
        pairs = [train[i] for i in indices]
        logps, n_chosen, n_correct = sequence_logps(model, pairs, device)
        ref_chosen, ref_rejected = reference_tensors([train_refs[i] for i in indices], device)
        result = dpo_loss(logps[0], logps[1], ref_chosen, ref_rejected, spec.beta)
        result.loss.backward()
        metrics = {
            "train_loss": float(result.loss.item()),
            "train_mean_token_accuracy": n_correct / max(n_chosen, 1),
            **_flat("train", result.stats()),
        }
        n_step_tokens = sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in pairs)
        return StepResult(loss=metrics["train_loss"], metrics=metrics, n_tokens=n_step_tokens)

    def validate(step: int, epoch_end: bool) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if valid and (step % eval_every == 0 or epoch_end):
            sample = [valid[i] for i in sample_idx]
            refs = [valid_refs[i] for i in sample_idx]
            row.update(_flat("valid", evaluate(trainable, sample, refs, spec.batch_size, spec.beta)))
        if valid and loop.full_evaluation_due(step, epoch_end):
            full = (
                {k.removeprefix("valid_"): v for k, v in row.items() if k.startswith("valid_")}
                if len(sample_idx) == len(valid) and "valid_loss" in row
                else evaluate(trainable, valid, valid_refs, spec.batch_size, spec.beta)
            )
            row.update(_flat("full_valid", {k.removeprefix("rewards_"): v for k, v in full.items()}))
        return row

    # 4. The final model (adapter, or whole model with full fine-tuning) and results.csv.
    if loop.run(train_step, validate):
        loop.finish(
            extra_columns=REWARD_COLUMNS,
            training_type=spec.training_type,
            hyperparameters={
                "n_epochs": spec.n_epochs,
                "batch_size": spec.batch_size,
                "learning_rate_multiplier": spec.learning_rate_multiplier,
                "beta": spec.beta,
            },
        )


def _flat(prefix: str, values: dict[str, float]) -> dict[str, float]:
    """``{"loss": .., "margin": ..}`` -> ``{"{prefix}_loss": .., "{prefix}_rewards_margin": ..}``."""
    return {
        f"{prefix}_{k}" if k in ("loss", "mean_token_accuracy") else f"{prefix}_rewards_{k}": v
        for k, v in values.items()
    }


def _load(path: str, tokenizer: Any, max_seq_len: int, events: EventWriter, purpose: str) -> list[PreferencePair]:
    """Tokenize a preference file, reporting truncated pairs and dropping those left with no answer tokens."""
    try:
        pairs, truncated = load_preference_pairs(path, tokenizer, max_seq_len)
    except TrainingDataError as exc:
        raise TrainingDataError(f"{purpose.capitalize()} file: {exc}", param=f"{purpose}_file") from exc
    report_skipped_lines(
        events,
        truncated,
        f"{purpose} pairs were longer than the context ({max_seq_len} tokens) and were truncated",
        file=purpose,
        max_seq_len=max_seq_len,
    )
    empty = [p.line for p in pairs if not (has_labels(p.chosen) and has_labels(p.rejected))]
    report_skipped_lines(
        events, empty, f"{purpose} pairs have no answer tokens left after truncation and were skipped", file=purpose
    )
    skipped = set(empty)
    return [p for p in pairs if p.line not in skipped]
