"""Reinforcement fine-tuning (RFT) with LoRA and a grader: the ``reinforcement`` method of a job.

GRPO-style, on-policy: every step takes ``batch_size`` training prompts, samples a group of
completions for each from the current policy, grades them with the job's grader, and normalises
each group's rewards to advantages (``(r - mean) / std``; a group whose rewards are all equal
teaches nothing and is skipped). The loss is the policy gradient ``-A * log p(completion)``
averaged over each completion's tokens, plus ``KL_COEF`` times a per-token KL estimate to the base
model (the same weights with the LoRA adapter disabled, so no second copy is held).

Hyperparameters: ``compute_multiplier`` scales the group size (4 completions at 1.0);
``reasoning_effort`` scales the most tokens a completion may have (low 0.5x, default/medium 1x,
high 2x of ``BASE_NEW_TOKENS``); ``eval_interval`` sets the steps between validation evaluations
and ``eval_samples`` the completions per validation prompt (1: greedy, else sampled and averaged).
The full validation set is scored before training, at each epoch's end and so after the last step.
A grader that fails on a sample (a python grader that hangs or crashes, say) gives it a reward of 0
and is counted in ``train_grader_error_rate``; training goes on.

Writes, like the supervised recipe: events, one adapter checkpoint per epoch, the final adapter and
``results.csv`` (the standard columns, then the reward columns). Full training states, pause
(SIGTERM) and resume work as in the supervised recipe (``training/checkpointing.py``).
"""

from __future__ import annotations

import csv
import functools
import math
import random
import shutil
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from openft.models.loader import load_model_and_tokenizer
from openft.training.chat_data import TrainingDataError
from openft.training.checkpointing import Checkpointer, Progress, epoch_order, resume
from openft.training.events import EventWriter
from openft.training.recipes.supervised import (
    lr_factor,
    resolve_base_model,
    resolve_dtype,
    save_adapter,
)
from openft.training.rft_grading import Grading
from openft.training.rollouts import Completion, Prompt, completion_logprobs, load_prompts, sample
from openft.training.spec import TrainingSpec

BASE_NEW_TOKENS = 64
EFFORT_SCALE = {"low": 0.5, "default": 1.0, "medium": 1.0, "high": 2.0}
BASE_GROUP_SIZE = 4
KL_COEF = 0.04
TEMPERATURE = 0.7
"""Sampling temperature of training completions (log-probabilities are taken at the same temperature):
at 1.0 with no top-k, small models spend most samples on gibberish."""
MAX_GRAD_NORM = 1.0
VALID_SAMPLE_SIZE = 32
AUTO_EVALUATIONS = 10
RESULTS_HEADER = [
    "step",
    "train_loss",
    "train_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "train_mean_reward",
    "train_reward_std",
    "valid_mean_reward",
    "full_valid_mean_reward",
]


def group_size(compute_multiplier: float) -> int:
    """Completions sampled per training prompt: at least 2 (a group of one has no baseline)."""
    return max(2, min(64, round(BASE_GROUP_SIZE * compute_multiplier)))


def max_new_tokens(reasoning_effort: str) -> int:
    return max(8, round(BASE_NEW_TOKENS * EFFORT_SCALE.get(reasoning_effort, 1.0)))


def advantages(rewards: Sequence[float]) -> list[float]:
    """Group-normalised advantages; all zeros when the rewards are all equal."""
    mean = statistics.fmean(rewards)
    std = statistics.pstdev(rewards)
    if std < 1e-8:
        return [0.0] * len(rewards)
    return [(r - mean) / std for r in rewards]


def run(spec: TrainingSpec, events: EventWriter) -> None:
    """Fine-tune ``spec.base_model`` with LoRA to raise ``spec.grader``'s reward on the training prompts.

    Raises:
        TrainingDataError: a line cannot be rendered as a prompt, or the job has no grader.
        ValueError: the base model is unknown or ``spec.dtype`` is not a dtype name.
    """
    started = time.perf_counter()
    output_dir = Path(spec.output_dir)
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    grading = Grading(spec, Path(spec.models_dir))

    from peft import LoraConfig, get_peft_model

    base = resolve_base_model(spec.base_model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_model_and_tokenizer(
        base, Path(spec.models_dir), dtype=resolve_dtype(spec.dtype, base.id, device)
    )
    lora = LoraConfig(
        r=spec.lora_rank,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        model = get_peft_model(model, lora).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]

    new_tokens = max_new_tokens(spec.reasoning_effort)
    max_prompt = max(16, (spec.max_seq_len or base.context_length) - new_tokens)
    train = _load(spec.training_file, tokenizer, max_prompt, events, "training")
    valid = _load(spec.validation_file, tokenizer, max_prompt, events, "validation") if spec.validation_file else []
    n_group = group_size(spec.compute_multiplier)
    steps_per_epoch = math.ceil(len(train) / spec.batch_size)
    total_steps = spec.n_epochs * steps_per_epoch
    eval_every = spec.eval_interval or max(1, round(total_steps / AUTO_EVALUATIONS))
    eval_samples = spec.eval_samples or 1
    valid_sample = [
        valid[i] for i in sorted(random.Random(spec.seed).sample(range(len(valid)), min(VALID_SAMPLE_SIZE, len(valid))))
    ]
    events.message(
        f"Reinforcement fine-tuning on {len(train)} prompts, {spec.n_epochs} epochs of {steps_per_epoch} steps, "
        f"batch size {spec.batch_size}, {n_group} completions per prompt of at most {new_tokens} tokens, "
        f"grader '{spec.grader['name']}' ({spec.grader['type']})"
        + (f"; validating on {len(valid)} prompts" if valid else ""),
        data={"samples_per_prompt": n_group, "max_new_tokens": new_tokens, "eval_interval": eval_every},
    )

    def evaluate(prompts: Sequence[Prompt]) -> float:
        rewards: list[float] = []
        for first in range(0, len(prompts), 8):
            chunk = prompts[first : first + 8]
            groups = sample(
                model, tokenizer, chunk, eval_samples, new_tokens, greedy=eval_samples == 1, temperature=TEMPERATURE
            )
            for prompt, group in zip(chunk, groups, strict=True):
                rewards += grading.rewards(prompt, group)[0]
        return statistics.fmean(rewards)

    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=0.0)
    warmup_steps = round(spec.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup_steps, total_steps))
    # Pause and resume as in the supervised recipe (training/checkpointing.py): a resumed run takes its
    # place in the prompts, its history, the LoRA weights, the optimizer and every RNG from the saved state.
    progress = resume(
        spec.resume_from,
        model,
        optimizer,
        scheduler,
        Progress(total_steps=total_steps, seed=spec.seed, n_examples=len(train), batch_size=spec.batch_size),
        events,
    )
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
        if spec.keep_checkpoints <= 0 or not history or (saved_steps and saved_steps[-1] == step):
            return
        path = f"checkpoints/step-{step}"
        save_adapter(model, tokenizer, output_dir / path)
        metrics = {k: v for k, v in history[-1].items() if k not in ("total_steps", "epoch")}
        events.checkpoint(step=step, path=path, metrics=metrics)
        saved_steps.append(step)
        while len(saved_steps) > spec.keep_checkpoints:
            old = saved_steps.pop(0)
            shutil.rmtree(output_dir / f"checkpoints/step-{old}", ignore_errors=True)
            events.checkpoint_deleted(old)

    if valid and step == 0:
        before = evaluate(valid)
        events.message(
            f"Full validation mean reward before training: {before:.3f}",
            data={"step": 0, "full_valid_mean_reward": before},
        )

    model.train()
    for epoch in range(progress.epoch, spec.n_epochs):
        order = epoch_order(len(train), spec.seed, epoch)
        start = progress.position if epoch == progress.epoch else 0
        for first in range(start, len(order), spec.batch_size):
            step_started = time.perf_counter()
            batch = [train[i] for i in order[first : first + spec.batch_size]]
            groups = sample(model, tokenizer, batch, n_group, new_tokens, temperature=TEMPERATURE)
            sampled_at = time.perf_counter()
            rewards: list[float] = []
            failures = 0
            losses: list[float] = []
            kls: list[float] = []
            for prompt, group in zip(batch, groups, strict=True):
                group_rewards, failed = grading.rewards(prompt, group)
                rewards += group_rewards
                failures += failed
                trained_tokens += sum(len(prompt.input_ids) + len(c.token_ids) for c in group)
                adv = advantages(group_rewards)
                if not any(adv):
                    continue
                loss, kl = _group_loss(model, prompt, group, adv)
                (loss / len(batch)).backward()
                losses.append(float(loss.item()))
                kls.append(kl)
            graded_at = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            train_seconds += time.perf_counter() - step_started
            row: dict[str, Any] = {
                "step": step,
                "total_steps": total_steps,
                "epoch": epoch + 1,
                "train_loss": statistics.fmean(losses) if losses else 0.0,
                "train_mean_reward": statistics.fmean(rewards),
                "train_reward_std": statistics.pstdev(rewards),
                "train_grader_error_rate": failures / len(rewards),
                "kl": statistics.fmean(kls) if kls else 0.0,
                "completion_tokens_mean": statistics.fmean(len(c.token_ids) for g in groups for c in g),
            }
            epoch_end = first + spec.batch_size >= len(order)
            if valid_sample and step % eval_every == 0 and not (epoch_end and len(valid_sample) == len(valid)):
                row["valid_mean_reward"] = evaluate(valid_sample)
            if valid and epoch_end:
                row["full_valid_mean_reward"] = evaluate(valid)
                row.setdefault("valid_mean_reward", row["full_valid_mean_reward"])
            history.append(row)
            events.metrics(
                **row,
                trained_tokens=trained_tokens,
                timing={
                    "sampling": sampled_at - step_started,
                    "grading_and_training": graded_at - sampled_at,
                    "full_iteration": time.perf_counter() - step_started,
                },
                elapsed_seconds=time.perf_counter() - started,
            )
            # A stop request (SIGTERM: pause) saves a servable checkpoint and a full state, then ends cleanly.
            if not epoch_end and checkpointer.save_point(
                step,
                epoch_end=False,
                save_checkpoint=save_checkpoint,
                save_state=functools.partial(save_state, epoch, first + spec.batch_size, order),
            ):
                grading.close()
                events.stopped(step)
                return

        if checkpointer.save_point(
            step,
            epoch_end=True,
            save_checkpoint=save_checkpoint,
            save_state=functools.partial(save_state, epoch + 1, 0, []),
        ):
            grading.close()
            events.stopped(step)
            return

    grading.close()
    save_adapter(model, tokenizer, output_dir / "adapter")
    write_results_csv(history, output_dir / "results.csv")
    events.result(
        adapter_path="adapter",
        results_csv="results.csv",
        trained_tokens=trained_tokens,
        n_examples=len(train),
        total_steps=total_steps,
        hyperparameters={
            "n_epochs": spec.n_epochs,
            "batch_size": spec.batch_size,
            "learning_rate_multiplier": spec.learning_rate_multiplier,
            "compute_multiplier": spec.compute_multiplier,
            "reasoning_effort": spec.reasoning_effort,
            "eval_interval": eval_every,
            "eval_samples": eval_samples,
        },
    )


def _group_loss(
    model: Any, prompt: Prompt, group: Sequence[Completion], adv: Sequence[float]
) -> tuple[torch.Tensor, float]:
    """Policy-gradient loss of one group plus ``KL_COEF`` x KL to the base model, and the mean KL."""
    logprobs, mask = completion_logprobs(model, prompt, group, TEMPERATURE)
    with torch.no_grad(), model.disable_adapter():
        ref_logprobs, _ = completion_logprobs(model, prompt, group, TEMPERATURE)
    # k3 estimator of KL(policy || base): non-negative, unbiased, low variance (Schulman).
    delta = ref_logprobs - logprobs
    kl = torch.exp(delta) - delta - 1
    advantage = torch.tensor(adv, device=logprobs.device).unsqueeze(-1)
    per_token = -advantage * logprobs + KL_COEF * kl
    per_completion = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    mean_kl = float(((kl * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean().item())
    return per_completion.mean(), mean_kl


def _load(path: str, tokenizer: Any, max_prompt: int, events: EventWriter, purpose: str) -> list[Prompt]:
    prompts, truncated = load_prompts(path, tokenizer, max_prompt, purpose)
    if not prompts:
        raise TrainingDataError(f"The {purpose} file has no prompts.", param=f"{purpose}_file")
    if truncated:
        events.message(
            f"{len(truncated)} {purpose} prompts were longer than {max_prompt} tokens and were cut to their "
            f"last {max_prompt} tokens: lines {', '.join(map(str, truncated))}",
            level="warn",
            data={"file": purpose, "lines": truncated},
        )
    return prompts


def write_results_csv(history: Sequence[dict[str, Any]], path: Path) -> None:
    """``results.csv``: the standard columns (no token loss or accuracy here), then the rewards."""

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.8g}"

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RESULTS_HEADER)
        for row in history:
            writer.writerow([row["step"], *(cell(row.get(k)) for k in RESULTS_HEADER[1:])])
