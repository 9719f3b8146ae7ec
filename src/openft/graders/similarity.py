"""Text-similarity metrics of the ``text_similarity`` grader, each a score in [0, 1].

Pure Python, no downloads: ``fuzzy_match`` is difflib's similarity ratio; ``bleu`` is sentence
BLEU-4 (uniform weights, brevity penalty, Chen & Cherry's add-epsilon smoothing of empty n-gram
orders); ``gleu`` is sentence-level Google BLEU (n = 1..4); ``meteor`` is METEOR with exact unigram
matching (alpha 0.9, beta 3, gamma 0.5; no stemming or synonyms); ``rouge_N`` and ``rouge_l`` are
the F1 scores of rouge-score with its default tokenizer (lowercase alphanumeric tokens, no stemming).
``cosine`` needs an embedding model and is computed elsewhere (``graders/embeddings.py``).
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

_WORD = re.compile(r"[a-z0-9]+")
BLEU_EPSILON = 0.1


def _words(text: str) -> list[str]:
    return text.split()


def _rouge_tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def fuzzy_match(candidate: str, reference: str) -> float:
    if not candidate and not reference:
        return 1.0
    return difflib.SequenceMatcher(None, candidate, reference, autojunk=False).ratio()


def bleu(candidate: str, reference: str, max_n: int = 4) -> float:
    hyp, ref = _words(candidate), _words(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    log_precision = 0.0
    for n in range(1, max_n + 1):
        hyp_ngrams, ref_ngrams = _ngrams(hyp, n), _ngrams(ref, n)
        total = sum(hyp_ngrams.values())
        if total == 0:
            # A candidate shorter than n words has no n-grams: that order is smoothed like a miss.
            total = 1
        matches = sum(min(count, ref_ngrams[g]) for g, count in hyp_ngrams.items())
        log_precision += math.log((matches or BLEU_EPSILON) / total) / max_n
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return brevity * math.exp(log_precision)


def gleu(candidate: str, reference: str, max_n: int = 4) -> float:
    hyp, ref = _words(candidate), _words(reference)
    hyp_ngrams: Counter[tuple[str, ...]] = Counter()
    ref_ngrams: Counter[tuple[str, ...]] = Counter()
    for n in range(1, max_n + 1):
        hyp_ngrams += _ngrams(hyp, n)
        ref_ngrams += _ngrams(ref, n)
    total = max(sum(hyp_ngrams.values()), sum(ref_ngrams.values()))
    if total == 0:
        return float(hyp == ref)
    matches = sum((hyp_ngrams & ref_ngrams).values())
    return matches / total


def meteor(candidate: str, reference: str, alpha: float = 0.9, beta: float = 3.0, gamma: float = 0.5) -> float:
    hyp, ref = [w.lower() for w in _words(candidate)], [w.lower() for w in _words(reference)]
    if not hyp or not ref:
        return float(hyp == ref)
    # Align each candidate word to the first unused equal reference word, left to right.
    used: set[int] = set()
    alignment: list[tuple[int, int]] = []
    for i, word in enumerate(hyp):
        for j, ref_word in enumerate(ref):
            if j not in used and ref_word == word:
                used.add(j)
                alignment.append((i, j))
                break
    matches = len(alignment)
    if matches == 0:
        return 0.0
    precision, recall = matches / len(hyp), matches / len(ref)
    fmean = precision * recall / (alpha * precision + (1 - alpha) * recall)
    chunks = 1 + sum(1 for (i0, j0), (i1, j1) in itertools.pairwise(alignment) if i1 != i0 + 1 or j1 != j0 + 1)
    return fmean * (1 - gamma * (chunks / matches) ** beta)


def _f1(overlap: int, n_candidate: int, n_reference: int) -> float:
    if overlap == 0 or n_candidate == 0 or n_reference == 0:
        return 0.0
    precision, recall = overlap / n_candidate, overlap / n_reference
    return 2 * precision * recall / (precision + recall)


def rouge_n(candidate: str, reference: str, n: int) -> float:
    hyp, ref = _ngrams(_rouge_tokens(candidate), n), _ngrams(_rouge_tokens(reference), n)
    return _f1(sum((hyp & ref).values()), sum(hyp.values()), sum(ref.values()))


def rouge_l(candidate: str, reference: str) -> float:
    hyp, ref = _rouge_tokens(candidate), _rouge_tokens(reference)
    # Longest common subsequence, one row at a time.
    previous = [0] * (len(ref) + 1)
    for word in hyp:
        current = [0]
        for j, ref_word in enumerate(ref):
            current.append(previous[j] + 1 if word == ref_word else max(previous[j + 1], current[j]))
        previous = current
    return _f1(previous[-1], len(hyp), len(ref))


METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": (lambda c, r, n=n: rouge_n(c, r, n)) for n in range(1, 6)},
    "rouge_l": rouge_l,
}
"""Metric name -> ``f(candidate, reference)``; ``cosine`` is not here (it needs a model)."""
