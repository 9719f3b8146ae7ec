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
the supervised recipe (position ids restart per sequence, ``use_cache=False``, attention within
each sequence alone, bf16 autocast over a bf16 base), and runs the LM head only where an answer
token is predicted. Events, checkpoints and ``results.csv`` are those of
the supervised recipe plus the reward statistics: ``{split}_rewards_chosen``, ``_rejected``,
``_margin`` (chosen minus rejected) and ``_accuracy`` (share of pairs with a positive margin).
Full training states, pause (SIGTERM) and resume work as in the supervised recipe
(``training/checkpointing.py``); a resumed run recomputes the reference values the same way.
"""

from __future__ import annotations

import csv
import functools
import math
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from openft.training.chat_data import TrainingDataError
from openft.training.checkpointing import Checkpointer, Progress, epoch_order, resume
from openft.training.dpo_loss import dpo_loss, evaluate, reference_logps, reference_tensors, sequence_logps
from openft.training.events import EventWriter
from openft.training.mixed_precision import keep_adapter_inputs_in_base_dtype
from openft.training.model_setup import load_trainable_model
from openft.training.packed_attention import use_packed_attention
from openft.training.preference_data import PreferencePair, has_labels, load_preference_pairs
from openft.training.recipes.supervised import (
    AUTO_EVALUATIONS,
    MAX_GRAD_NORM,
    RESULTS_HEADER,
    VALID_SAMPLE_SIZE,
    lr_factor,
    resolve_base_model,
    resolve_dtype,
    save_adapter,
)
from openft.training.spec import TrainingSpec

REWARD_STATS = ("chosen", "rejected", "margin", "accuracy")
DPO_RESULTS_HEADER = [
    *RESULTS_HEADER,
    *(f"{split}_rewards_{name}" for split in ("train", "valid") for name in REWARD_STATS),
]


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
    if truncated:
        events.message(
            f"{len(truncated)} {purpose} pairs were longer than the context ({max_seq_len} tokens) "
            f"and were truncated: lines {', '.join(map(str, truncated))}",
            level="warn",
            data={"file": purpose, "lines": truncated, "max_seq_len": max_seq_len},
        )
    empty = [p.line for p in pairs if not (has_labels(p.chosen) and has_labels(p.rejected))]
    if empty:
        events.message(
            f"{len(empty)} {purpose} pairs have no answer tokens left after truncation and were skipped: "
            f"lines {', '.join(map(str, empty))}",
            level="warn",
            data={"file": purpose, "lines": empty},
        )
    skipped = set(empty)
    return [p for p in pairs if p.line not in skipped]


def run(spec: TrainingSpec, events: EventWriter) -> None:
    """Train ``spec.base_model`` with DPO on the preference pairs of ``spec.training_file``.

    Raises:
        TrainingDataError: A line cannot be tokenized, or no pair has answer tokens to train on.
        ValueError: The base model, the training type or ``spec.dtype`` is unknown.
    """
    started = time.perf_counter()
    output_dir = Path(spec.output_dir)
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)

    # 1. The model (LoRA or full), then the pairs.
    base = resolve_base_model(spec.base_model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trainable = load_trainable_model(spec, base, events, dtype=resolve_dtype(spec.dtype, base.id, device))
    model, tokenizer = trainable.model, trainable.tokenizer
    use_packed_attention(model)  # attention within each answer, no mask: see training/packed_attention.py
    keep_adapter_inputs_in_base_dtype(model)
    max_seq_len = spec.max_seq_len or base.context_length
    train = _load(spec.training_file, tokenizer, max_seq_len, events, "training")
    if not train:
        raise TrainingDataError("The training file has no preference pair to train on.", param="training_file")
    valid = _load(spec.validation_file, tokenizer, max_seq_len, events, "validation") if spec.validation_file else []
    n_sample = min(VALID_SAMPLE_SIZE, len(valid))
    sample_idx = sorted(random.Random(spec.seed).sample(range(len(valid)), n_sample))

    # 2. Reference log-probabilities, once: the reference model never changes.
    ref_started = time.perf_counter()
    train_refs = reference_logps(trainable, train, spec.batch_size)
    valid_refs = reference_logps(trainable, valid, spec.batch_size)
    steps_per_epoch = math.ceil(len(train) / spec.batch_size)
    total_steps = spec.n_epochs * steps_per_epoch
    eval_every = spec.eval_every or max(1, round(total_steps / AUTO_EVALUATIONS))
    n_tokens = sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in train)
    events.message(
        f"Training on {len(train)} preference pairs ({n_tokens:,} tokens), {spec.n_epochs} epochs of "
        f"{steps_per_epoch} steps, batch size {spec.batch_size}, beta {spec.beta:g}"
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

    # 3. Train: AdamW, linear warmup then decay, gradient clipping (as the supervised recipe). A
    # resumed run takes its place in the data, its history, every tensor and RNG from the saved state
    # (training/checkpointing.py); the reference values above are unaffected, having been computed
    # from the weights as loaded (full) or with the adapter disabled (LoRA).
    optimizer = torch.optim.AdamW(trainable.trainable, lr=spec.learning_rate, weight_decay=0.0)
    warmup_steps = round(spec.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup_steps, total_steps))
    fresh = Progress(total_steps=total_steps, seed=spec.seed, n_examples=len(train), batch_size=spec.batch_size)
    progress = resume(spec.resume_from, model, optimizer, scheduler, fresh, events)
    started -= progress.elapsed_seconds
    history, saved_steps = progress.history, progress.saved_steps
    step, trained_tokens, train_seconds = progress.step, progress.trained_tokens, progress.train_seconds
    checkpointer = Checkpointer(
        output_dir, every_steps=spec.save_state_every_steps, every_seconds=spec.save_state_every_seconds
    )
    checkpointer.install_stop_handler()

    def save_state(epoch: int, position: int, order: list[int]) -> None:
        checkpointer.save(
            model,
            optimizer,
            scheduler,
            progress,
            step=step,
            epoch=epoch,
            position=position,
            epoch_order=order,
            trained_tokens=trained_tokens,
            train_seconds=train_seconds,
            elapsed_seconds=time.perf_counter() - started,
        )

    def save_checkpoint() -> None:
        """A servable checkpoint at ``step``; only the last keep_checkpoints stay on disk."""
        if spec.keep_checkpoints <= 0 or (saved_steps and saved_steps[-1] == step):
            return
        path = f"checkpoints/step-{step}"
        save_adapter(model, tokenizer, output_dir / path)
        events.checkpoint(
            step=step, path=path, metrics={k: v for k, v in history[-1].items() if k not in ("total_steps", "epoch")}
        )
        saved_steps.append(step)
        while len(saved_steps) > spec.keep_checkpoints:
            old = saved_steps.pop(0)
            shutil.rmtree(output_dir / f"checkpoints/step-{old}", ignore_errors=True)
            events.checkpoint_deleted(old)

    model.train()
    for epoch in range(progress.epoch, spec.n_epochs):
        order = epoch_order(len(train), spec.seed, epoch)
        start = progress.position if epoch == progress.epoch else 0
        for first in range(start, len(order), spec.batch_size):
            step_started = time.perf_counter()
            indices = order[first : first + spec.batch_size]
            pairs = [train[i] for i in indices]
            logps, n_chosen, n_correct = sequence_logps(model, pairs, trainable.device)
            ref_chosen, ref_rejected = reference_tensors([train_refs[i] for i in indices], trainable.device)
            result = dpo_loss(logps[0], logps[1], ref_chosen, ref_rejected, spec.beta)
            result.loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable.trainable, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            trained_tokens += sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in pairs)
            train_seconds += time.perf_counter() - step_started
            row: dict[str, Any] = {
                "step": step,
                "total_steps": total_steps,
                "epoch": epoch + 1,
                "train_loss": float(result.loss.item()),
                "train_mean_token_accuracy": n_correct / max(n_chosen, 1),
                **_flat("train", result.stats()),
            }
            epoch_end = first + spec.batch_size >= len(order)
            if valid and (step % eval_every == 0 or epoch_end):
                sample = [valid[i] for i in sample_idx]
                refs = [valid_refs[i] for i in sample_idx]
                row.update(_flat("valid", evaluate(trainable, sample, refs, spec.batch_size, spec.beta)))
            if valid and epoch_end:
                full = (
                    {k.removeprefix("valid_"): v for k, v in row.items() if k.startswith("valid_")}
                    if n_sample == len(valid)
                    else evaluate(trainable, valid, valid_refs, spec.batch_size, spec.beta)
                )
                row.update(_flat("full_valid", {k.removeprefix("rewards_"): v for k, v in full.items()}))
            history.append(row)
            events.metrics(
                **row,
                trained_tokens=trained_tokens,
                tokens_per_second=trained_tokens / train_seconds,
                elapsed_seconds=time.perf_counter() - started,
            )
            # A full state within the epoch; a stop request (SIGTERM: pause) also leaves a servable
            # checkpoint, then ends the process cleanly.
            if not epoch_end and checkpointer.save_point(
                step,
                epoch_end=False,
                save_checkpoint=save_checkpoint,
                save_state=functools.partial(save_state, epoch, first + spec.batch_size, order),
            ):
                events.stopped(step)
                return

        # 4a. One servable checkpoint and one full state per epoch.
        if checkpointer.save_point(
            step,
            epoch_end=True,
            save_checkpoint=save_checkpoint,
            save_state=functools.partial(save_state, epoch + 1, 0, []),
        ):
            events.stopped(step)
            return

    # 4b. The final model (adapter, or whole model with full fine-tuning) and results.csv.
    save_adapter(model, tokenizer, output_dir / "adapter")
    write_results_csv(history, output_dir / "results.csv")
    events.result(
        adapter_path="adapter",
        results_csv="results.csv",
        trained_tokens=trained_tokens,
        n_examples=len(train),
        total_steps=total_steps,
        training_type=spec.training_type,
        hyperparameters={
            "n_epochs": spec.n_epochs,
            "batch_size": spec.batch_size,
            "learning_rate_multiplier": spec.learning_rate_multiplier,
            "beta": spec.beta,
        },
    )


def write_results_csv(history: Sequence[dict[str, Any]], path: Path) -> None:
    """OpenAI's five columns, then the reward statistics; empty cells where nothing was computed."""
    keys = ["step", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    keys += DPO_RESULTS_HEADER[len(RESULTS_HEADER) :]

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.8g}"

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(DPO_RESULTS_HEADER)
        for row in history:
            writer.writerow([row["step"], *(cell(row.get(k)) for k in keys[1:])])
