"""Choosing each next token of one generated answer (one batch row), with OpenAI's parameters.

Every row samples on its own, so requests with different parameters share a batch:

* ``temperature`` 0 is greedy; otherwise logits / temperature, then nucleus (``top_p``) filtering;
  OpenAI has no top-k, so none is applied.
* ``presence_penalty`` / ``frequency_penalty`` are applied exactly as OpenAI documents them, to the
  logits of tokens this answer already generated.
* Each row has its own ``torch.Generator``: with a ``seed`` an answer does not depend on what else is
  in the batch (choice ``i`` of ``n`` uses ``seed + i``).
* ``logprobs`` are those of the distribution actually sampled from (after penalties, temperature and
  top-p); tokens it excludes get OpenAI's floor of -9999.0.
* With a :class:`~openft.serving.json_constraint.JsonConstraint`, tokens are drawn from the model's
  distribution and rejected until one keeps the answer valid JSON.
* With a :class:`~openft.serving.schema_constraint.SchemaConstraint`, the tokens its grammar forbids
  are masked out of the logits first (after the penalties, before temperature and top-p), so greedy,
  sampling and logprobs all see the distribution restricted to valid continuations.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from openft.serving.backend import SamplingParams
from openft.serving.json_constraint import JsonConstraint
from openft.serving.schema_constraint import SchemaConstraint

if TYPE_CHECKING:
    import torch

LOGPROB_FLOOR = -9999.0
_TRIES = 32
"""Rejected draws before a constrained row scans the candidates in order of probability."""
_SCAN = 4096
"""Most likely candidates scanned before the constraint's forced token is taken."""


class RowSampler:
    """Picks the tokens of one answer.

    Args:
        params: The request's sampling parameters.
        choice: The answer's index among the request's ``n``.
        vocab_size: Width of the logits.
        device: Where the logits live.
        token_text: Decodes one token id (for logprob entries).
        constraint: Restricts tokens to valid JSON (or to a JSON schema's grammar), or None.
    """

    def __init__(
        self,
        params: SamplingParams,
        choice: int,
        vocab_size: int,
        device: torch.device,
        token_text: Any,
        constraint: JsonConstraint | SchemaConstraint | None = None,
    ) -> None:
        import torch

        self.params = params
        self.token_text = token_text
        self.constraint = constraint if isinstance(constraint, JsonConstraint) else None
        """The constraint that accepts or rejects drawn tokens (``json_object``)."""
        self.grammar = constraint if isinstance(constraint, SchemaConstraint) else None
        """The constraint that masks the logits (``json_schema``)."""
        self.counts: torch.Tensor | None = None
        if params.presence_penalty or params.frequency_penalty:
            self.counts = torch.zeros(vocab_size, device=device)
        self.generator: torch.Generator | None = None
        if params.temperature > 0:
            seed = params.seed + choice if params.seed is not None else secrets.randbits(62)
            self.generator = torch.Generator(device=device).manual_seed(seed)

    def pick(self, logits: torch.Tensor, remaining: int) -> tuple[int, dict[str, Any] | None]:
        """The next token for ``logits`` (one row, float32) with ``remaining`` tokens left after it.

        Returns:
            The token and, when logprobs were asked for, its OpenAI ``logprobs.content`` entry.
        """
        import torch

        scores = logits
        if self.counts is not None:
            scores = scores - self.params.frequency_penalty * self.counts
            scores = scores - self.params.presence_penalty * (self.counts > 0).to(scores.dtype)
        if self.grammar is not None:
            scores = self.grammar.mask(scores if scores is not logits else scores.clone())
        if self.constraint is not None and self.constraint.state.done:
            token = self.constraint.forced()  # the end-of-turn token
        elif self.grammar is not None and self.grammar.done:
            token = self.grammar.forced()
        elif self.grammar is not None and (closing := self.grammar.closing_token(remaining)) is not None:
            token = closing
        elif self.generator is None:
            token = self._greedy(scores, remaining)
        else:
            scores = scores / self.params.temperature
            if self.params.top_p < 1:
                scores = _nucleus(scores, self.params.top_p)
            token = self._sample(scores, remaining)
        if self.counts is not None:
            self.counts[token] += 1
        if self.constraint is not None:
            self.constraint.advance(token)
        if self.grammar is not None:
            self.grammar.advance(token)
        entry = None
        if self.params.logprobs is not None:
            entry = self._entry(torch.log_softmax(scores, dim=-1), token)
        return token, entry

    # -- choosing ------------------------------------------------------------------------------

    def _greedy(self, scores: torch.Tensor, remaining: int) -> int:
        import torch

        best = int(torch.argmax(scores))
        if self.constraint is None or self.constraint.allows(best, remaining):
            return best
        return self._scan(scores, remaining)

    def _sample(self, scores: torch.Tensor, remaining: int) -> int:
        import torch

        probs = torch.softmax(scores, dim=-1)
        for _ in range(_TRIES if self.constraint is not None else 1):
            token = int(torch.multinomial(probs, 1, generator=self.generator))
            if self.constraint is None or self.constraint.allows(token, remaining):
                return token
            probs[token] = 0
            if not bool(probs.any()):
                break
        return self._scan(scores, remaining)

    def _scan(self, scores: torch.Tensor, remaining: int) -> int:
        """The most likely allowed token among the first ``_SCAN`` (else the constraint's forced token)."""
        import torch

        assert self.constraint is not None
        order = torch.argsort(scores, descending=True)[:_SCAN].tolist()
        for token in order:
            if self.constraint.allows(token, remaining):
                return int(token)
        return self.constraint.forced(remaining)

    def _entry(self, logp: torch.Tensor, token: int) -> dict[str, Any]:
        import torch

        item = self._logprob(token, float(logp[token]))
        alternatives: list[dict[str, Any]] = []
        top = self.params.logprobs or 0
        if top:
            values, indices = torch.topk(logp, k=min(top, logp.shape[-1]))
            alternatives = [
                self._logprob(int(i), float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)
            ]
        return {**item, "top_logprobs": alternatives}

    def _logprob(self, token: int, value: float) -> dict[str, Any]:
        text = self.token_text(token)
        return {"token": text, "logprob": max(value, LOGPROB_FLOOR), "bytes": list(text.encode("utf-8"))}


def _nucleus(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """``scores`` with the tokens outside the smallest set of probability >= ``top_p`` set to -inf."""
    import torch

    ordered, indices = torch.sort(scores, descending=True)
    cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
    drop = cumulative - torch.softmax(ordered, dim=-1) >= top_p  # keeps the token that crosses top_p
    ordered = ordered.masked_fill(drop, float("-inf"))
    return torch.empty_like(scores).scatter_(0, indices, ordered)
