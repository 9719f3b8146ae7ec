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
``results.csv`` (the standard columns, then the reward columns). The optimizer, full training
states, pause (SIGTERM) and resume are the shared loop's (``training/loop.py``). Only LoRA: the KL
reference is the base under the adapter.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from openft.data.chat_messages import TrainingDataError
from openft.training.common import load_model, report_skipped_lines, validation_sample
from openft.training.events import EventWriter
from openft.training.failures import TrainingFailure
from openft.training.loop import StepResult, TrainingLoop, epoch_steps, interval
from openft.training.model_setup import LORA
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
REWARD_COLUMNS = ["train_mean_reward", "train_reward_std", "valid_mean_reward", "full_valid_mean_reward"]
"""The columns ``results.csv`` has after OpenAI's five (this method has no token loss or accuracy)."""


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
        TrainingFailure: the job asks for full fine-tuning.
        ValueError: the base model is unknown or ``spec.dtype`` is not a dtype name.
    """
    started = time.perf_counter()
    if spec.training_type != LORA:
        raise TrainingFailure("Reinforcement fine-tuning trains LoRA adapters only.", param="method")
    grading = Grading(spec, Path(spec.models_dir))
    try:
        base, trainable = load_model(spec, events)
        new_tokens = max_new_tokens(spec.reasoning_effort)
        policy = _Policy(trainable.model, trainable.tokenizer, grading, new_tokens, group_size(spec.compute_multiplier))
        max_prompt = max(16, (spec.max_seq_len or base.context_length) - new_tokens)
        train = _load(spec.training_file, trainable.tokenizer, max_prompt, events, "training")
        valid = (
            _load(spec.validation_file, trainable.tokenizer, max_prompt, events, "validation")
            if spec.validation_file
            else []
        )
        valid_sample = [valid[i] for i in validation_sample(len(valid), spec.seed)]
        steps_per_epoch = epoch_steps(len(train), spec.batch_size)
        eval_every = interval(spec.eval_interval, spec.n_epochs * steps_per_epoch)
        eval_samples = spec.eval_samples or 1
        assert spec.grader is not None  # Grading refused a job without one
        events.message(
            f"Reinforcement fine-tuning on {len(train)} prompts, {spec.n_epochs} epochs of {steps_per_epoch} "
            f"steps, batch size {spec.batch_size}, {policy.n_group} completions per prompt of at most "
            f"{new_tokens} tokens, grader '{spec.grader['name']}' ({spec.grader['type']})"
            + (f"; validating on {len(valid)} prompts" if valid else ""),
            data={"samples_per_prompt": policy.n_group, "max_new_tokens": new_tokens, "eval_interval": eval_every},
        )

        def validate(step: int, epoch_end: bool) -> dict[str, Any]:
            row: dict[str, Any] = {}
            if valid_sample and step % eval_every == 0 and not (epoch_end and len(valid_sample) == len(valid)):
                row["valid_mean_reward"] = policy.mean_reward(valid_sample, eval_samples)
            if valid and epoch_end:
                row["full_valid_mean_reward"] = policy.mean_reward(valid, eval_samples)
                row.setdefault("valid_mean_reward", row["full_valid_mean_reward"])
            return row

        loop = TrainingLoop(spec, events, trainable, len(train), started=started)
        if valid and loop.step == 0:
            before = policy.mean_reward(valid, eval_samples)
            events.message(
                f"Full validation mean reward before training: {before:.3f}",
                data={"step": 0, "full_valid_mean_reward": before},
            )
        if loop.run(lambda indices: policy.train_step([train[i] for i in indices]), validate):
            loop.finish(
                extra_columns=REWARD_COLUMNS,
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
    finally:
        grading.close()


@dataclass
class _Policy:
    """The model being trained, as a sampler of graded completions."""

    model: Any
    tokenizer: Any
    grading: Grading
    new_tokens: int
    """The most tokens a completion may have."""
    n_group: int
    """Completions sampled per training prompt."""

    def mean_reward(self, prompts: Sequence[Prompt], n_samples: int) -> float:
        """Mean reward of ``n_samples`` completions per prompt (1: greedy), eight prompts at a time."""
        rewards: list[float] = []
        for first in range(0, len(prompts), 8):
            chunk = prompts[first : first + 8]
            groups = sample(
                self.model,
                self.tokenizer,
                chunk,
                n_samples,
                self.new_tokens,
                greedy=n_samples == 1,
                temperature=TEMPERATURE,
            )
            for prompt, group in zip(chunk, groups, strict=True):
                rewards += self.grading.rewards(prompt, group)[0]
        return statistics.fmean(rewards)

    def train_step(self, batch: list[Prompt]) -> StepResult:
        """Sample a group per prompt, grade it, and backpropagate the groups' policy-gradient losses."""
        step_started = time.perf_counter()
        groups = sample(self.model, self.tokenizer, batch, self.n_group, self.new_tokens, temperature=TEMPERATURE)
        sampled_at = time.perf_counter()
        rewards: list[float] = []
        failures = n_tokens = 0
        losses: list[float] = []
        kls: list[float] = []
        for prompt, group in zip(batch, groups, strict=True):
            group_rewards, failed = self.grading.rewards(prompt, group)
            rewards += group_rewards
            failures += failed
            n_tokens += sum(len(prompt.input_ids) + len(c.token_ids) for c in group)
            adv = advantages(group_rewards)
            if not any(adv):
                continue  # equal rewards teach nothing
            loss, kl = _group_loss(self.model, prompt, group, adv)
            (loss / len(batch)).backward()
            losses.append(float(loss.item()))
            kls.append(kl)
        train_loss = statistics.fmean(losses) if losses else 0.0
        metrics = {
            "train_loss": train_loss,
            "train_mean_reward": statistics.fmean(rewards),
            "train_reward_std": statistics.pstdev(rewards),
            "train_grader_error_rate": failures / len(rewards),
            "kl": statistics.fmean(kls) if kls else 0.0,
            "completion_tokens_mean": statistics.fmean(len(c.token_ids) for g in groups for c in g),
        }
        done = time.perf_counter()
        timing = {
            "sampling": sampled_at - step_started,
            "grading_and_training": done - sampled_at,
            "full_iteration": done - step_started,
        }
        return StepResult(loss=train_loss, metrics=metrics, n_tokens=n_tokens, report={"timing": timing})


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
    report_skipped_lines(
        events,
        truncated,
        f"{purpose} prompts were longer than {max_prompt} tokens and were cut to their last {max_prompt} tokens",
        file=purpose,
    )
    return prompts
