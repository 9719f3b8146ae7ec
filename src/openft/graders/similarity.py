"""Text-similarity metrics of the ``text_similarity`` grader, each a score in [0, 1].

Computed by the libraries OpenAI's own python graders ship with, loaded on first use (NLTK takes about
a second to import): ``fuzzy_match`` is rapidfuzz's ``WRatio`` over its default processing (lowercase,
no punctuation), as in OpenAI's graders guide; ``bleu`` is NLTK's sentence BLEU-4 on whitespace tokens
(uniform weights, brevity penalty, Chen & Cherry's add-epsilon smoothing of empty n-gram orders, and 0
when no word matches); ``gleu`` is NLTK's sentence GLEU (n = 1..4); ``rouge_N`` and ``rouge_l`` are the
F1 scores of rouge-score with its default tokenizer (lowercase alphanumeric tokens, no stemming).
``meteor`` is METEOR with exact unigram matching (alpha 0.9, beta 3, gamma 0.5; no stemming or
synonyms), written here: NLTK's needs the WordNet corpus, which it downloads at run time and no
maintained package on PyPI ships. Two empty texts are identical (1.0). ``cosine`` needs an embedding
model and is computed elsewhere (``graders/embeddings.py``).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any


def _words(text: str) -> list[str]:
    return text.split()


def fuzzy_match(candidate: str, reference: str) -> float:
    from rapidfuzz import fuzz, utils

    if not candidate and not reference:
        return 1.0
    return fuzz.WRatio(candidate, reference, processor=utils.default_process) / 100.0


def bleu(candidate: str, reference: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hyp, ref = _words(candidate), _words(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    return float(sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1))


def gleu(candidate: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    hyp, ref = _words(candidate), _words(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    return float(sentence_gleu([ref], hyp, min_len=1, max_len=4))


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
    return fmean * (1 - gamma * math.pow(chunks / matches, beta))


@functools.cache
def _rouge_scorer(kind: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=False)


def _rouge(candidate: str, reference: str, kind: str) -> float:
    # rouge-score scores (target, prediction).
    return float(_rouge_scorer(kind).score(reference, candidate)[kind].fmeasure)


def rouge_n(candidate: str, reference: str, n: int) -> float:
    return _rouge(candidate, reference, f"rouge{n}")


def rouge_l(candidate: str, reference: str) -> float:
    return _rouge(candidate, reference, "rougeL")


def _rouge_of_order(n: int) -> Callable[[str, str], float]:
    return lambda candidate, reference: rouge_n(candidate, reference, n)


METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": _rouge_of_order(n) for n in range(1, 6)},
    "rouge_l": rouge_l,
}
"""Metric name -> ``f(candidate, reference)``; ``cosine`` is not here (it needs a model)."""
