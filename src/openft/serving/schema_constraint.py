"""``response_format: json_schema``: decoding constrained to text that validates against the request's schema.

The schema is compiled by llguidance (a maintained Rust library: JSON schema to a grammar, and for each
decoding step the bitmask of the tokens that keep the text inside that grammar, in about 0.1 ms for a
49k-token vocabulary). ``sampling.RowSampler`` masks the logits with it before choosing a token, so a
sampled answer draws from the model's own distribution restricted to valid continuations, and greedy
answers take the most likely valid token.

* Required keys, ``enum``/``const``, ``minimum``/``maximum`` (and the exclusive forms), string
  ``minLength``/``maxLength``/``pattern``/``format``, arrays' ``minItems``/``maxItems``, ``anyOf``/``oneOf``,
  local ``$ref`` and ``additionalProperties`` are enforced; a schema llguidance cannot compile, or one
  that uses a keyword it does not support, is refused up front with a 400 (never answered unconstrained).
* The output is compact JSON with ``", "`` and ``": "`` separators (a model cannot idle in whitespace).
* Once the grammar is complete only an end-of-turn token may follow.
* Answers close within ``max_tokens`` when they can: near the end of its budget a row works out a
  short completion from where it stands (the grammar's forced tokens, else the first allowed of
  ``"``, ``}``, ``]``, a digit, a letter), and once that only just fits it follows it. An answer
  whose schema needs more tokens than ``max_tokens`` gives is an unfinished prefix, as with OpenAI.

Importing this module does not import torch (the API process checks schemas with it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from openft.errors import InvalidRequest

if TYPE_CHECKING:
    import llguidance
    import torch

MAX_SCHEMA_BYTES = 64 * 1024
"""Largest schema accepted (its JSON text)."""

_COMPILE_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def schema_grammar(schema: Mapping[str, Any], *, param: str = "response_format") -> str:
    """The llguidance grammar of ``schema``, checked.

    Raises:
        InvalidRequest: The schema is too large, not a JSON object, or not one llguidance supports
            (the message says why); ``param`` names it.
    """
    import llguidance

    if not isinstance(schema, Mapping):
        raise InvalidRequest("The JSON schema must be an object.", param=param)
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"The JSON schema is not valid JSON: {exc}", param=param) from exc
    if len(text) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(f"The JSON schema is larger than {MAX_SCHEMA_BYTES} bytes.", param=param)
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(text, defaults=_COMPILE_OPTIONS)  # type: ignore[arg-type]  # a TypedDict of the same keys
    except ValueError as exc:
        raise InvalidRequest(f"Invalid JSON schema: {exc}", param=param) from exc
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise InvalidRequest(f"Unsupported JSON schema: {messages[0]}", param=param)
    return grammar


def grammar_tokenizer(tokenizer: Any, vocab_size: int, eos_ids: list[int]) -> llguidance.LLTokenizer:
    """llguidance's view of a Hugging Face ``tokenizer`` (built once per loaded model: ~0.5 s for 49k tokens)."""
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=eos_ids)


_CLOSERS = ('"', "}", "]", "0", "1", "a")
"""Preferred characters when working out a short completion: end a string, an object, an array; a
digit or a letter where a value or more characters are required."""
_PLAN_STEPS = 256
"""Longest completion worked out; a schema needing more is left to ``max_tokens``."""
_PLAN_SLACK = 16
"""Tokens beyond the first completion's length at which rows start checking theirs."""


class SchemaConstraint:
    """Which tokens may come next for one answer constrained by a grammar; advanced with each chosen token.

    Args:
        tokenizer: From ``grammar_tokenizer`` for the model generating the answer.
        grammar: From ``schema_grammar``.
        eos_ids: End-of-turn tokens, allowed once the grammar is complete.
    """

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str, eos_ids: list[int]) -> None:
        import llguidance
        import torch

        self.eos_ids = eos_ids
        self._matcher = llguidance.LLMatcher(tokenizer, grammar)
        if self._matcher.is_error():
            raise InvalidRequest(f"Unsupported JSON schema: {self._matcher.get_error()}", param="response_format")
        self._bits = torch.arange(8, dtype=torch.uint8)
        self._closers = [t for t in (_single_token(tokenizer, c) for c in _CLOSERS) if t is not None]
        self._plan: list[int] = []
        """Tokens being followed to close the answer in time (empty: free decoding)."""
        self._watch_from = len(self._closing()) + _PLAN_SLACK
        """Rows check their completion once this few tokens are left."""

    @property
    def done(self) -> bool:
        """The grammar is complete (or broken): only the end-of-turn token may follow."""
        return self._matcher.is_stopped()

    def forced(self, remaining: int = 0) -> int:
        """The token that ends the answer once ``done``."""
        return self.eos_ids[0]

    def closing_token(self, remaining: int) -> int | None:
        """The next token of the completion the answer must follow to close with ``remaining`` tokens
        left after this one, or None while it is free."""
        if not self._plan and remaining < self._watch_from and not self._matcher.is_accepting():
            plan = self._closing()
            if len(plan) >= remaining:  # one more free token could leave no room to close
                self._plan = plan
        return self._plan.pop(0) if self._plan else None

    def _closing(self) -> list[int]:
        """A short token sequence that makes the grammar complete from here (best effort)."""
        matcher = self._matcher.deep_copy()
        plan: list[int] = []
        while len(plan) < _PLAN_STEPS and not matcher.is_accepting() and not matcher.is_error():
            forced = matcher.compute_ff_tokens()
            if forced:
                step = forced
            else:
                mask = matcher.compute_bitmask()
                allowed = [t for t in self._closers if mask[t >> 3] >> (t & 7) & 1]
                step = allowed[:1] or [_first_set_bit(mask)]
            if step == [-1] or not matcher.consume_tokens(step):
                break
            plan.extend(step)
        return plan if matcher.is_accepting() else []

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` (one row of logits) with every token the grammar forbids next set to -inf, in place."""
        import torch

        packed = torch.frombuffer(bytearray(self._matcher.compute_bitmask()), dtype=torch.uint8)
        allowed = ((packed[:, None] >> self._bits) & 1).flatten()[: scores.shape[-1]].bool()
        width = allowed.shape[-1]
        scores[width:] = float("-inf")  # logits wider than the tokenizer: padding rows
        scores[:width].masked_fill_(~allowed, float("-inf"))
        return scores

    def advance(self, token: int) -> None:
        """Feed the chosen token (a token the mask allowed; the end-of-turn token is ignored)."""
        if token in self.eos_ids:
            return
        self._matcher.consume_token(token)


def _single_token(tokenizer: llguidance.LLTokenizer, text: str) -> int | None:
    tokens = tokenizer.tokenize_str(text)
    return tokens[0] if len(tokens) == 1 else None


def _first_set_bit(mask: bytes) -> int:
    for i, byte in enumerate(mask):
        if byte:
            return i * 8 + (byte & -byte).bit_length() - 1
    return -1
