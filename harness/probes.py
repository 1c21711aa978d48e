"""Robustness probes: the trained model scored on perturbed copies of its evaluation rows.

After evaluation a cell draws up to `probe_rows` rows of its primary evaluation split (the same
rows for every model and seed: chosen by row id), perturbs each with every probe of the suite and
predicts them again; nothing is retrained. A perturbation depends only on the cell's seed, the
probe and the row id, so two runs write byte-identical text, and a row keeps its example id.

| probe | what it does to each text | label |
|---|---|---|
| `typos` | swaps two inner letters of a word of 4+ letters, for a `rate` share of them (0.1) | kept |
| `lowercase` | lowercases | kept |
| `punctuation` | removes . , ! ? ; : for a `rate` share of them (1.0) | kept |
| `contractions` | contracts the expanded forms ("do not" → "don't") and expands the contracted ones | kept |
| `names` | replaces each first name of a fixed list with another of the list | kept |
| `negation` | sentiment: drops the first negation, or negates the first is/was/are/were | flips |

Per probe: the task's metrics on the perturbed rows (the clean ones on the same rows beside
them), the invariance rate (the share of rows whose predicted class did not change), and for
`negation` the share of changed rows where the model's probability of the original label fell
("moved the right way"). Per cell, for classification: the worst-case accuracy over the
label-keeping probes, as HELM defines it: a row counts only if the model is right on it clean
and under every such probe.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import softmax

from harness.tasks.data import Examples
from harness.tasks.metrics import compute_metrics

DEFAULT_RATES = {"typos": 0.1, "punctuation": 1.0}
LABEL_KEEPING = ("typos", "lowercase", "punctuation", "contractions", "names")
# a binary sentiment task's class names, as GLUE's SST-2 and the Hub's IMDb spell them
SENTIMENT = ({"negative", "positive"}, {"neg", "pos"})

CONTRACTIONS = {
    "do not": "don't", "does not": "doesn't", "did not": "didn't", "is not": "isn't", "are not": "aren't",
    "was not": "wasn't", "were not": "weren't", "can not": "can't", "will not": "won't",
    "would not": "wouldn't", "could not": "couldn't", "should not": "shouldn't", "has not": "hasn't",
    "have not": "haven't", "it is": "it's", "that is": "that's", "there is": "there's", "i am": "i'm",
    "you are": "you're", "we are": "we're", "they are": "they're", "he is": "he's", "she is": "she's",
}  # fmt: skip
EXPANSIONS = {short: long for long, short in CONTRACTIONS.items()}
NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth",
    "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Laura", "Sandra", "Steven", "Ashley",
    "Paul", "Emily", "Andrew", "Donna", "Kevin", "Michelle", "Brian", "Carol", "George", "Amanda",
)  # fmt: skip
WORD = re.compile(r"[A-Za-z]{4,}")
PUNCTUATION = re.compile(r"\s?[.,!?;:]")
# case-insensitive, as SST-2 is lowercased: no name on the list is also a common English word
NAME = re.compile(r"\b(" + "|".join(NAMES) + r")\b", re.IGNORECASE)


def _contracted(short: str) -> str:
    """A pattern for a contracted form, spaced or not: SST-2 writes "is n't" and "it 's"."""
    cut = len(short) - 3 if short.endswith("n't") else short.index("'")
    return re.escape(short[:cut]) + r"\s?" + re.escape(short[cut:])


SHORT = re.compile(r"\b(?:" + "|".join(_contracted(s) for s in EXPANSIONS) + r")\b", re.IGNORECASE)
LONG = re.compile(r"\b(?:" + "|".join(CONTRACTIONS) + r")\b", re.IGNORECASE)
NEGATED = re.compile(r"\b(\w+)\s?n't\b|\b(not|never)\s", re.IGNORECASE)
AUXILIARY = re.compile(r"\b(is|was|are|were)\b", re.IGNORECASE)
UNCONTRACTED = {"ca": "can", "wo": "will", "sha": "shall"}  # the verb of "can't", "won't", "shan't"


@dataclass
class ProbeResult:
    status: str  # ok | skipped
    reason: str = ""
    rate: float | None = None
    rows: int = 0
    changed: float | None = None  # share of rows whose text the probe changed
    metrics: dict[str, float] = field(default_factory=dict)  # on the perturbed rows
    clean_metrics: dict[str, float] = field(default_factory=dict)  # the same rows, unperturbed
    invariance: float | None = None  # % of rows whose predicted class did not change
    moved: float | None = None  # negation: % of changed rows where p(original label) fell


def _typos(text: str, rng: random.Random, rate: float) -> str:
    def swap(match: re.Match) -> str:
        word = match.group(0)
        if rng.random() >= rate:
            return word
        i = rng.randrange(1, len(word) - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]

    return WORD.sub(swap, text)


def _punctuation(text: str, rng: random.Random, rate: float) -> str:
    return PUNCTUATION.sub(lambda m: "" if rng.random() < rate else m.group(0), text)


def _contractions(text: str, rng: random.Random, rate: float) -> str:
    def keep_case(old: str, new: str) -> str:
        return new[0].upper() + new[1:] if old[0].isupper() else new

    def expand(match: re.Match) -> str:
        key = re.sub(r"\s", "", match.group(0)).lower()
        return keep_case(match.group(0), EXPANSIONS.get(key, match.group(0)))

    def contract(match: re.Match) -> str:
        return keep_case(match.group(0), CONTRACTIONS[" ".join(match.group(0).lower().split())])

    expanded = SHORT.sub(expand, text)
    return expanded if expanded != text else LONG.sub(contract, text)


def _names(text: str, rng: random.Random, rate: float) -> str:
    def other(match: re.Match) -> str:
        name = rng.choice([n for n in NAMES if n.lower() != match.group(0).lower()])
        return name if match.group(0)[0].isupper() else name.lower()

    return NAME.sub(other, text)


def _negation(text: str, rng: random.Random, rate: float) -> str:
    """Remove the first negation ("isn't" or "is n't" → "is"; "not ", "never " → ""), or,
    without one, negate the first "is/was/are/were"."""
    negated = NEGATED.search(text)
    if negated is not None:
        verb = negated.group(1) or ""  # the verb of "isn't"
        kept = UNCONTRACTED.get(verb.lower(), verb) if verb else ""
        return text[: negated.start()] + kept + text[negated.end() :]
    auxiliary = AUXILIARY.search(text)
    return text if auxiliary is None else text[: auxiliary.end()] + " not" + text[auxiliary.end() :]


PERTURB: dict[str, Callable[[str, random.Random, float], str]] = {
    "typos": _typos,
    "lowercase": lambda text, rng, rate: text.lower(),
    "punctuation": _punctuation,
    "contractions": _contractions,
    "names": _names,
    "negation": _negation,
}


def perturb(name: str, text: str, seed: int, row_id: int, rate: float) -> str:
    """The probe's copy of one text: the same for the same (seed, probe, row id), on any machine."""
    return PERTURB[name](text, random.Random(f"{seed}:{name}:{row_id}"), rate)


def perturbed_rows(name: str, rows: Examples, seed: int, rate: float) -> Examples:
    def each(texts: list[str] | None, part: str) -> list[str] | None:
        if texts is None:
            return None
        return [
            perturb(name, t, seed, int(r) * 2 + (part == "b"), rate)
            for t, r in zip(texts, rows.row_ids, strict=True)
        ]

    return Examples(each(rows.text_a, "a"), each(rows.text_b, "b"), rows.labels, rows.row_ids)


def probe_sample(rows: Examples, limit: int) -> Examples:
    """Up to `limit` rows, the same whichever model or seed asks: ordered by a fixed scramble of
    their row ids (Knuth's multiplicative hash), in their own order."""
    if len(rows) <= limit:
        return rows
    keys = (rows.row_ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return rows.take(np.sort(np.argsort(keys, kind="stable")[:limit]))


def applies(name: str, is_pair: bool, label_names: list[str] | None) -> str:
    """Why the probe does not apply to this task ("" when it does)."""
    if name == "negation" and is_pair:
        return "negating one text of a pair has no defined effect on its label"
    if name == "negation" and not (label_names and len(label_names) == 2 and set(label_names) in SENTIMENT):
        return "negation flips a label only on a sentiment task (labels negative, positive or neg, pos)"
    return ""


def predicted_class(outputs: np.ndarray) -> np.ndarray:
    return outputs.argmax(axis=1) if outputs.ndim == 2 else outputs


def score_probe(
    name: str,
    rate: float,
    clean: Examples,
    perturbed: Examples,
    clean_out: np.ndarray,
    out: np.ndarray,
    metrics: list[str],
) -> ProbeResult:
    labels = clean.labels
    pairs = [(clean.text_a, perturbed.text_a), (clean.text_b or [], perturbed.text_b or [])]
    changed = np.zeros(len(labels), dtype=bool)
    for before, after in pairs:
        if before:
            changed |= np.array([a != b for a, b in zip(before, after, strict=True)])
    result = ProbeResult("ok", rate=rate, rows=len(labels), changed=float(changed.mean() * 100))
    result.clean_metrics = compute_metrics(metrics, clean_out, labels)
    classification = clean_out.ndim == 2
    if name != "negation":
        result.metrics = compute_metrics(metrics, out, labels)
    if classification:
        result.invariance = float((predicted_class(out) == predicted_class(clean_out)).mean() * 100)
    else:
        result.reason = "invariance is defined for classes; this task predicts a score"
    if name == "negation" and changed.any():
        p_clean = softmax(clean_out, axis=1)[np.arange(len(labels)), labels.astype(int)]  # (N,)
        p_out = softmax(out, axis=1)[np.arange(len(labels)), labels.astype(int)]  # (N,)
        result.moved = float((p_out[changed] < p_clean[changed]).mean() * 100)
    return result


def worst_case(labels: np.ndarray, clean_out: np.ndarray, outs: list[np.ndarray]) -> float:
    """% of rows right clean and under every label-keeping probe (HELM's worst case)."""
    right = predicted_class(clean_out) == labels
    for out in outs:
        right &= predicted_class(out) == labels
    return float(right.mean() * 100)
