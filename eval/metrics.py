"""Pure scoring functions: retrieval, answers, citations, refusals, latency.

No I/O and no project imports: plain values in, numbers out, so the runner, the report and the tests
all score the same way.

Conventions
- Retrieval metrics are document level. Several chunks of one document are often retrieved, so the
  ranked ids are de-duplicated (first occurrence wins) before the cut-off `k` applies.
- A question with no relevant documents scores 0.0 on every retrieval metric. That is a convention, not
  a judgement: the runner leaves unanswerable questions out of retrieval averages.
- Answer metrics take the maximum over the gold answers, as SQuAD and KorQuAD do; with no gold answers
  they return 0.0 (the runner scores unanswerable questions by refusal instead).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence

from rag.text.hangul import contains_any_hangul

__all__ = [
    "answer_exact_match",
    "answer_f1",
    "char_f1",
    "citation_precision",
    "citation_recall",
    "contains_answer",
    "contains_hangul",
    "distinct_top_k",
    "exact_match",
    "latency_summary",
    "mean_or_none",
    "ndcg_at_k",
    "normalize_answer_korquad",
    "normalize_answer_squad",
    "percentile",
    "recall_at_k",
    "reciprocal_rank",
    "refusal_correct",
    "token_exact_match",
    "token_f1",
]


_ASCII_PUNCTUATION = frozenset(string.punctuation)

# KorQuAD v1.0's evaluate script (korquad.github.io, evaluate-v1.0.py) first replaces exactly these
# characters with a space, and only then deletes ASCII punctuation. The order matters for exact match:
# "a(b)" normalises to "a b", not "ab". Unicode punctuation outside this list (“ ” · … 「 」 『 』, full-width
# forms) is NOT removed by the official script, and so it is not removed here either.
_KORQUAD_TO_SPACE = str.maketrans(dict.fromkeys("'\"《》<>〈〉()‘’", " "))

_ENGLISH_ARTICLES = re.compile(r"\b(a|an|the)\b")


# --- retrieval -------------------------------------------------------------------------------------


def distinct_top_k(ranked_doc_ids: Sequence[str], k: int) -> list[str]:
    """The first `k` distinct document ids of a ranking, in rank order (first occurrence wins)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return list(dict.fromkeys(ranked_doc_ids))[:k]


def recall_at_k(ranked_doc_ids: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Document-level hit rate: 1.0 if any relevant id is among the first `k` distinct ranked ids, else 0.0.

    This is "recall@k" as QA retrieval papers use it (success@k), not the share of relevant documents
    found. 0.0 when `relevant` is empty.
    """
    relevant_ids = set(relevant)
    return 1.0 if any(doc_id in relevant_ids for doc_id in distinct_top_k(ranked_doc_ids, k)) else 0.0


def reciprocal_rank(ranked_doc_ids: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """1 / rank of the first relevant document among the first `k` distinct ranked ids; 0.0 if none.

    Averaged over questions this is MRR@k. 0.0 when `relevant` is empty.
    """
    relevant_ids = set(relevant)
    for rank, doc_id in enumerate(distinct_top_k(ranked_doc_ids, k), start=1):
        if doc_id in relevant_ids:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked_doc_ids: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """Binary-relevance nDCG over the first `k` distinct ranked ids.

    DCG = sum over ranks r (1-based) holding a relevant document of 1 / log2(r + 1); it is divided by the
    DCG of the ideal ranking, which puts min(|relevant|, k) relevant documents first. 0.0 when `relevant`
    is empty.
    """
    relevant_ids = set(relevant)
    if not relevant_ids:
        return 0.0
    top = distinct_top_k(ranked_doc_ids, k)
    dcg = sum(1.0 / math.log2(rank + 1) for rank, doc_id in enumerate(top, start=1) if doc_id in relevant_ids)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant_ids), k) + 1))
    return dcg / ideal


# --- answers: normalisation ------------------------------------------------------------------------


def contains_hangul(text: str) -> bool:
    """True if `text` has at least one Hangul character (syllable or jamo, archaic jamo included)."""
    return contains_any_hangul(text)


def normalize_answer_korquad(s: str) -> str:
    """KorQuAD v1.0 answer normalisation, as in the official evaluate-v1.0.py script.

    Replace ' " 《 》 < > 〈 〉 ( ) ‘ ’ with spaces, lower-case, delete ASCII punctuation
    (`string.punctuation`), then collapse whitespace runs to one space. Spaces are kept here, so exact
    match is spacing-sensitive (as in the official script); character F1 ignores them.
    """
    text = s.translate(_KORQUAD_TO_SPACE).lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCTUATION)
    return " ".join(text.split())


def normalize_answer_squad(s: str) -> str:
    """SQuAD v1.1 answer normalisation: lower-case, delete ASCII punctuation, drop a/an/the, collapse spaces."""
    text = "".join(ch for ch in s.lower() if ch not in _ASCII_PUNCTUATION)
    text = _ENGLISH_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _overlap_f1(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """F1 of the multiset overlap of two unit sequences (characters or tokens); 0.0 when nothing overlaps."""
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(gold)
    return 2 * precision * recall / (precision + recall)


def _max_over_ground_truths(score: Callable[[str, str], float], prediction: str, ground_truths: Sequence[str]) -> float:
    return max((score(prediction, truth) for truth in ground_truths), default=0.0)


# --- answers: KorQuAD (character level) ------------------------------------------------------------


def _korquad_em(prediction: str, truth: str) -> float:
    return float(normalize_answer_korquad(prediction) == normalize_answer_korquad(truth))


def _korquad_f1(prediction: str, truth: str) -> float:
    # The official script splits the normalised text on whitespace and F1-scores the characters of the
    # tokens, i.e. spaces never count.
    predicted = normalize_answer_korquad(prediction).replace(" ", "")
    gold = normalize_answer_korquad(truth).replace(" ", "")
    return _overlap_f1(list(predicted), list(gold))


def exact_match(prediction: str, ground_truths: Sequence[str]) -> float:
    """KorQuAD v1.0 exact match: 1.0 if the normalised prediction equals some normalised gold answer.

    See `normalize_answer_korquad`; spacing differences ("2월 15일" vs "2월15일") are NOT forgiven.
    0.0 with no gold answers.
    """
    return _max_over_ground_truths(_korquad_em, prediction, ground_truths)


def char_f1(prediction: str, ground_truths: Sequence[str]) -> float:
    """KorQuAD v1.0 F1: max over gold answers of the F1 of the character multisets after normalisation.

    Characters come from the normalised text with spaces removed. 0.0 when nothing overlaps (also when
    both sides normalise to nothing, as in the official script) and with no gold answers.
    """
    return _max_over_ground_truths(_korquad_f1, prediction, ground_truths)


# --- answers: SQuAD (token level) ------------------------------------------------------------------


def _squad_em(prediction: str, truth: str) -> float:
    return float(normalize_answer_squad(prediction) == normalize_answer_squad(truth))


def _squad_f1(prediction: str, truth: str) -> float:
    return _overlap_f1(normalize_answer_squad(prediction).split(), normalize_answer_squad(truth).split())


def token_exact_match(prediction: str, ground_truths: Sequence[str]) -> float:
    """SQuAD v1.1 exact match on `normalize_answer_squad` strings; max over gold answers, 0.0 with none."""
    return _max_over_ground_truths(_squad_em, prediction, ground_truths)


def token_f1(prediction: str, ground_truths: Sequence[str]) -> float:
    """SQuAD v1.1 F1 over whitespace tokens of `normalize_answer_squad` strings; max over gold answers.

    0.0 when no token overlaps (also when either side is empty after normalisation) and with no gold answers.
    """
    return _max_over_ground_truths(_squad_f1, prediction, ground_truths)


# --- answers: by script ----------------------------------------------------------------------------


def _f1_by_script(prediction: str, truth: str) -> float:
    return _korquad_f1(prediction, truth) if contains_hangul(truth) else _squad_f1(prediction, truth)


def _em_by_script(prediction: str, truth: str) -> float:
    return _korquad_em(prediction, truth) if contains_hangul(truth) else _squad_em(prediction, truth)


def answer_f1(prediction: str, ground_truths: Sequence[str]) -> float:
    """F1 chosen per gold answer: KorQuAD character F1 if the gold contains Hangul, else SQuAD token F1.

    Max over gold answers; 0.0 with none.
    """
    return _max_over_ground_truths(_f1_by_script, prediction, ground_truths)


def answer_exact_match(prediction: str, ground_truths: Sequence[str]) -> float:
    """Exact match chosen per gold answer: KorQuAD EM if the gold contains Hangul, else SQuAD EM.

    Max over gold answers; 0.0 with none.
    """
    return _max_over_ground_truths(_em_by_script, prediction, ground_truths)


def _contains(prediction: str, truth: str) -> float:
    if contains_hangul(truth):
        # Korean: particles attach to the answer ("15일에" holds "15일") and spacing varies, so compare
        # without spaces and without word boundaries.
        gold = normalize_answer_korquad(truth).replace(" ", "")
        return float(bool(gold) and gold in normalize_answer_korquad(prediction).replace(" ", ""))
    # Other scripts: whole words only, so "cat" is not found in "bobcat"; but a Korean particle or ending may
    # attach to a Latin word or a number ("TBC입니다", "1990년"), so only a Latin letter or digit beside the
    # gold breaks the match.
    gold = normalize_answer_squad(truth)
    pattern = rf"(?<![^\W_]){re.escape(gold)}(?![^\W_])"
    unattached = re.sub(r"(?<=[0-9a-z])(?=[가-힣])|(?<=[가-힣])(?=[0-9a-z])", " ", normalize_answer_squad(prediction))
    return float(bool(gold) and re.search(pattern, unattached) is not None)


def contains_answer(prediction: str, ground_truths: Sequence[str]) -> float:
    """1.0 if some gold answer, normalised, occurs inside the normalised prediction, else 0.0.

    Meant for long generated answers, which rarely match a short gold span exactly. Hangul golds use the
    KorQuAD normalisation with spaces removed and plain substring search; other golds use the SQuAD
    normalisation and must occur as whole tokens. Golds that normalise to nothing never match.
    """
    return _max_over_ground_truths(_contains, prediction, ground_truths)


# --- citations and refusals ------------------------------------------------------------------------


def citation_precision(
    cited_doc_ids: Sequence[str],
    cited_quotes: Sequence[str],
    relevant_doc_ids: Collection[str],
    gold_answers: Sequence[str],
) -> float | None:
    """Share of citations that are supported: the cited document is relevant, or its quote contains a gold answer.

    Citations are counted one by one (two citations of one document count twice); quote containment is
    `contains_answer`. None when there are no citations (nothing to be precise about).
    """
    if len(cited_doc_ids) != len(cited_quotes):
        raise ValueError(f"{len(cited_doc_ids)} cited doc ids but {len(cited_quotes)} quotes")
    if not cited_doc_ids:
        return None
    relevant_ids = set(relevant_doc_ids)
    supported = sum(
        1
        for doc_id, quote in zip(cited_doc_ids, cited_quotes, strict=True)
        if doc_id in relevant_ids or contains_answer(quote, gold_answers) == 1.0
    )
    return supported / len(cited_doc_ids)


def citation_recall(cited_doc_ids: Sequence[str], relevant_doc_ids: Collection[str]) -> float | None:
    """Share of the distinct relevant documents that are cited at least once; None when none is relevant."""
    relevant_ids = set(relevant_doc_ids)
    if not relevant_ids:
        return None
    return len(relevant_ids & set(cited_doc_ids)) / len(relevant_ids)


def refusal_correct(refused: bool, answerable: bool) -> bool:
    """A refusal is correct exactly when the question is unanswerable (answering it is the mistake)."""
    return refused != answerable


# --- aggregation -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) by linear interpolation between closest ranks.

    Same as numpy.percentile's default ("linear") method: position (n - 1) * q / 100 in the sorted values.
    NaN for no values.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    fraction = position - below
    return float(ordered[below] + (ordered[above] - ordered[below]) * fraction)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, mean and max of latencies in milliseconds; every value NaN when there are none.

    NaN is not valid JSON: whoever serialises this should map it to null.
    """
    if not values_ms:
        return {"p50": math.nan, "p95": math.nan, "mean": math.nan, "max": math.nan}
    return {
        "p50": percentile(values_ms, 50),
        "p95": percentile(values_ms, 95),
        "mean": math.fsum(values_ms) / len(values_ms),
        "max": float(max(values_ms)),
    }


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """Arithmetic mean of the values that are not None; None when there are none."""
    present = [value for value in values if value is not None]
    return math.fsum(present) / len(present) if present else None
