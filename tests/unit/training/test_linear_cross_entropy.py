"""The chunked LM head + cross-entropy (training/linear_cross_entropy.py) against the plain computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from openft.training.linear_cross_entropy import fusable_head, linear_cross_entropy


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_elements", [7 * 300, 10**9])  # several chunks (one ragged) and one
def test_loss_accuracy_and_gradient_match_logits_then_cross_entropy(dtype: torch.dtype, chunk_elements: int) -> None:
    torch.manual_seed(0)
    weight = (torch.randn(300, 32) * 0.3).to(dtype)
    hidden = torch.randn(45, 32, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, 300, (45,))
    targets[:20] = (hidden[:20].detach().float() @ weight.float().t()).argmax(-1)  # some right, some wrong

    loss, correct = linear_cross_entropy(hidden, weight, targets, chunk_elements=chunk_elements)
    (grad,) = torch.autograd.grad(loss / 45, hidden)

    logits = (hidden @ weight.t()).float()
    expected = F.cross_entropy(logits, targets, reduction="sum")
    (expected_grad,) = torch.autograd.grad(expected / 45, hidden)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert int(correct) == int((logits.argmax(-1) == targets).sum()) >= 20
    tolerance = 1e-6 if dtype == torch.float32 else 1e-3
    assert torch.allclose(grad.float(), expected_grad.float(), atol=tolerance, rtol=1e-2)


def test_without_gradients_it_only_scores() -> None:
    weight, hidden, targets = torch.randn(50, 8), torch.randn(6, 8), torch.randint(0, 50, (6,))
    with torch.no_grad():
        loss, correct = linear_cross_entropy(hidden, weight, targets)
    assert loss.item() == pytest.approx(F.cross_entropy(hidden @ weight.t(), targets, reduction="sum").item(), rel=1e-6)
    assert 0 <= int(correct) <= 6


def test_only_a_frozen_bias_free_linear_head_is_fused() -> None:
    head = torch.nn.Linear(8, 50, bias=False).requires_grad_(False)
    assert fusable_head(head)
    assert not fusable_head(torch.nn.Linear(8, 50, bias=False))  # trainable (full fine-tuning)
    assert not fusable_head(torch.nn.Linear(8, 50).requires_grad_(False))  # bias
