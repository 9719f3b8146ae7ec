"""DPO's loss and the log-probabilities it is computed from (torch; used by ``recipes/dpo.py``).

    reward(answer) = beta * (log p_policy(answer | prompt) - log p_reference(answer | prompt))
    loss = -log sigmoid(reward(preferred) - reward(non_preferred))

A log-probability is summed over the answer's tokens (end-of-turn included), from one packed
forward pass over both answers of every pair in a batch (see ``training/packing.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from openft.data.chat_data import IGNORE_INDEX
from openft.data.preference_data import PreferencePair
from openft.training.mixed_precision import compute_precision
from openft.training.model_setup import TrainableModel
from openft.training.packed_attention import packed_kwargs
from openft.training.packing import pack


@dataclass(frozen=True)
class DpoLoss:
    """The loss of a batch of pairs and each pair's implicit rewards (detached)."""

    loss: torch.Tensor
    """Mean over pairs of ``-log sigmoid(chosen_rewards - rejected_rewards)``; carries gradients."""
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor

    def stats(self) -> dict[str, float]:
        """Mean rewards, mean margin and the share of pairs the policy ranks right."""
        return reward_stats(self.chosen_rewards, self.rejected_rewards)


def reward_stats(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    """``chosen``/``rejected``: mean rewards; ``margin``: their mean difference; ``accuracy``: share above 0."""
    margin = chosen_rewards - rejected_rewards
    return {
        "chosen": float(chosen_rewards.mean()),
        "rejected": float(rejected_rewards.mean()),
        "margin": float(margin.mean()),
        "accuracy": float((margin > 0).float().mean()),
    }


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> DpoLoss:
    """DPO's sigmoid loss from summed log-probabilities of each answer, one entry per pair.

    Args:
        policy_chosen: ``log p_policy(preferred | prompt)``, shape ``(n_pairs,)``.
        policy_rejected: ``log p_policy(non_preferred | prompt)``.
        reference_chosen: The same under the reference model (no gradient needed).
        reference_rejected: Likewise for the non-preferred answers.
        beta: The strength of the pull towards the reference (OpenAI's ``beta``, 0 < beta <= 2).
    """
    chosen_rewards = beta * (policy_chosen - reference_chosen)
    rejected_rewards = beta * (policy_rejected - reference_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return DpoLoss(loss, chosen_rewards.detach(), rejected_rewards.detach())


def sequence_logps(model: Any, pairs: Sequence[PreferencePair], device: torch.device) -> tuple[torch.Tensor, int, int]:
    """Summed log-probabilities of every answer's tokens: shape ``(2, n_pairs)`` (chosen, rejected).

    Also returns how many chosen-answer tokens there are and how many of them argmax predicts.
    """
    sequences = [seq for pair in pairs for seq in (pair.chosen, pair.rejected)]
    batch = pack(sequences, device)
    # The index of the sequence each packed position belongs to, to sum log-probs per sequence.
    segment = torch.tensor(
        [[i for i, seq in enumerate(sequences) for _ in seq.input_ids]], dtype=torch.long, device=device
    )
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(causal_lm, causal_lm.base_model_prefix)
    where = batch.targets != IGNORE_INDEX
    targets = batch.targets[where]
    with compute_precision(model):  # bf16 autocast over a bf16 base: see training/mixed_precision.py
        hidden = decoder(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,
            use_cache=False,
            **packed_kwargs(list(batch.lengths), device),  # attention within each answer alone
        ).last_hidden_state
        logits = causal_lm.get_output_embeddings()(hidden[where]).float()
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    owner = segment[where]
    sums = torch.zeros(len(sequences), dtype=token_logps.dtype, device=device).index_add(0, owner, token_logps)
    chosen = owner % 2 == 0
    n_correct = int((logits.detach().argmax(dim=-1) == targets)[chosen].sum().item())
    return sums.view(-1, 2).T, int(chosen.sum().item()), n_correct


def reference_logps(
    trainable: TrainableModel, pairs: Sequence[PreferencePair], batch_size: int
) -> list[tuple[float, float]]:
    """Each pair's (chosen, rejected) log-probability under the reference model, in eval mode."""
    out: list[tuple[float, float]] = []
    trainable.model.eval()
    with trainable.reference() as reference:
        for first in range(0, len(pairs), batch_size):
            logps, _, _ = sequence_logps(reference, pairs[first : first + batch_size], trainable.device)
            out += [(float(c), float(r)) for c, r in logps.T.tolist()]
    trainable.model.train()
    return out


def reference_tensors(refs: Sequence[tuple[float, float]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.tensor(refs, dtype=torch.float32, device=device)
    return values[:, 0], values[:, 1]


@torch.no_grad()
def evaluate(
    trainable: TrainableModel,
    pairs: Sequence[PreferencePair],
    refs: Sequence[tuple[float, float]],
    batch_size: int,
    beta: float,
) -> dict[str, float]:
    """Loss, chosen-token accuracy and reward statistics over ``pairs``, in eval mode."""
    model, device = trainable.model, trainable.device
    model.eval()
    chosen: list[torch.Tensor] = []
    rejected: list[torch.Tensor] = []
    n_tokens = n_correct = 0
    for first in range(0, len(pairs), batch_size):
        logps, tokens, correct = sequence_logps(model, pairs[first : first + batch_size], device)
        ref_chosen, ref_rejected = reference_tensors(refs[first : first + batch_size], device)
        result = dpo_loss(logps[0], logps[1], ref_chosen, ref_rejected, beta)
        chosen.append(result.chosen_rewards)
        rejected.append(result.rejected_rewards)
        n_tokens += tokens
        n_correct += correct
    model.train()
    all_chosen, all_rejected = torch.cat(chosen), torch.cat(rejected)
    loss = float(-F.logsigmoid(all_chosen - all_rejected).mean())
    return {"loss": loss, "mean_token_accuracy": n_correct / max(n_tokens, 1), **reward_stats(all_chosen, all_rejected)}
