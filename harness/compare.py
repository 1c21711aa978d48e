"""Regression verdicts: compare a run with a baseline, and cry wolf only on real changes.

Cells are matched by (task, variant, metric) and seeds are pooled: a variant is the model label
with its sweep point and learning-curve size (`cnn[dropout=0.3]@n=250`), so the points of a
grid and the sizes of a curve are compared each with itself, never pooled into one test.

Quality metrics (accuracy, F1, ...; higher is better):
- With at least two seeds on both sides, a change needs both a significant
  difference (Welch's t-test, one-sided, Holm-corrected across every compared
  quality metric at `alpha`) and a size beyond `min_effect` points. The minimum
  detectable effect (80% power) for the seeds given is reported beside it.
- With one seed on either side there is no spread to test against: only the
  absolute tolerance `min_effect` decides, and the verdict is marked weak, except for
  a model fitted without randomness (`tfidf`): with no seed noise to hide behind, a
  change beyond the tolerance is the code's or the data's, and is not weak.

Speed and memory are compared only when the hardware matches (device name, CPU
model, threads): a ratio of medians beyond a relative tolerance (10% throughput and
latency, 5% peak memory) is a change; with at least four measurements on each side it
must also be significant (Mann-Whitney U, one-sided). Four, because with three a side
the smallest one-sided p-value the exact test can give is 1/20 = 0.05, never below. A timing
(speed, latency) counts only the seeds that timed it with the machine to themselves (other
processes used at most 10% of it: `record.contention`); a side whose every seed shared the
machine gets no verdict, and says so: a busy machine slows the code without changing it.

A metric in the baseline but not in the current run is `missing` (a regression);
one only in the current run is `new`. A metric that both runs report but that is
undefined (NaN) on every seed of both, such as a constant predictor's correlation, is
`undefined` on both sides: not a regression, and said so. Undefined in the current run
only (the model collapsed to a constant) is a regression; in the baseline only, `new`.
Whether higher is better comes from the metric registry.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
from scipy import stats

from harness import strict_json
from harness.errors import InputError
from harness.record import CellRecord, fill_variants
from harness.report.scores import quiet_seeds
from harness.report.stats import holm_adjusted, welch_pvalue
from harness.tasks.metrics import higher_is_better

BASELINE_FORMAT = "harness-baseline/1"
HARDWARE_KEYS = ("device_name", "cpu_model", "threads")
MIN_FOR_MANN_WHITNEY = 4


@dataclass(frozen=True)
class CostMetric:
    column: str
    higher_is_better: bool
    tolerance: float  # relative
    phase: str | None = None  # the cell phase that times it (`record.contention`)


COST_METRICS = tuple(  # the record's cost fields that carry a tolerance (harness/record.py)
    CostMetric(name, cost.higher_is_better, cost.tolerance, cost.phase)
    for name, cost in CellRecord.costs().items()
    if cost.tolerance is not None
)


@dataclass
class Thresholds:
    alpha: float = 0.05
    min_effect: float = 0.5  # points (percent) for quality metrics
    per_metric: dict[str, float] = field(default_factory=dict)  # "task/metric" → points
    compare_cost: bool = True

    def effect_for(self, task: str, metric: str) -> float:
        return self.per_metric.get(f"{task}/{metric}", self.min_effect)


@dataclass
class Comparison:
    task: str
    variant: str  # model label + sweep point + training size
    metric: str
    kind: str  # "quality" or "cost"
    verdict: str  # regression | improvement | unchanged | missing | new | undefined | skipped
    baseline_mean: float | None = None
    current_mean: float | None = None
    delta: float | None = None  # current - baseline (points), or ratio - 1 for cost
    p_value: float | None = None  # Holm-adjusted for quality
    n_baseline: int = 0
    n_current: int = 0
    mde: float | None = None
    weak: bool = False
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.task}/{self.variant}/{self.metric}"


# --------------------------------------------------------------------------- loading sides


def save_baseline(records: pd.DataFrame, path: Path) -> None:
    """A portable, git-friendly file of a run's ok records with their seed-level metrics."""
    keep = ["run_id", "suite", "task", "model", "variant", "sweep_point", "train_size", "adapter", "seed"]
    keep += ["config_hash", "status", "metrics"]
    keep += [c.column for c in COST_METRICS] + list(HARDWARE_KEYS)
    keep += ["git_commit", "code_hash", "versions"]
    keep += [column for column in ("deployed", "probes", "contention") if column in records]
    rows = records[keep].to_dict(orient="records")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(strict_json.dumps({"format": BASELINE_FORMAT, "records": rows}, indent=1))


def load_side(side: str, store_path: Path) -> pd.DataFrame:
    """A run id in the store (`latest` for the newest), or a baseline file; the ok records only."""
    path = Path(side)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise InputError(path, "baseline file not found", "check the path or save one first")
        try:
            payload = json.loads(path.read_text())
            if payload.get("format") != BASELINE_FORMAT:
                raise ValueError(f"format is {payload.get('format')!r}, expected {BASELINE_FORMAT!r}")
            frame = pd.DataFrame(payload["records"])
            frame["metrics"]  # noqa: B018  (a KeyError here means a broken file)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputError(
                path, f"not a baseline file ({error})", "save one with `harness baseline save`"
            ) from None
    else:
        from harness.store import Store

        store = Store(store_path, create=False)
        try:
            if side == "latest":
                side = store.latest_run() or side
            if not store.has_run(side):
                raise InputError(
                    store_path, f"no run {side!r} and no such baseline file", "see `harness list runs`"
                )
            frame = store.records([side])
        finally:
            store.close()
    return with_derived(fill_variants(frame[frame["status"] == "ok"].reset_index(drop=True)))


def probe_metrics(probes: dict | None) -> dict[str, float]:
    """A cell's probe figures as metrics: `accuracy@typos`, `invariance@typos` (%),
    `moved@negation` (%), `accuracy@worst-case`."""
    found: dict[str, float] = {}
    for probe, result in (probes or {}).items():
        if not isinstance(result, dict) or result.get("status") != "ok":
            continue
        found.update({f"{name}@{probe}": value for name, value in (result.get("metrics") or {}).items()})
        for figure in ("invariance", "moved"):
            if result.get(figure) is not None:
                found[f"{figure}@{probe}"] = result[figure]
    return found


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """Each deployment backend's figures and each probe's as metrics of their own:
    `accuracy@int8` and `accuracy@typos` beside `accuracy`, and cost columns such as
    `infer_examples_per_s@onnx`, so that a backend that gets slower or less accurate, or a model
    that gets less robust, is a regression like any other."""
    if frame.empty or ("deployed" not in frame and "probes" not in frame):
        return frame
    frame = frame.copy()
    metrics, extra = [], []
    for row in frame.itertuples():
        mine, costs = dict(row.metrics), {}
        mine.update(probe_metrics(getattr(row, "probes", None)))
        for backend, result in (getattr(row, "deployed", None) or {}).items():
            if backend == "eager" or not isinstance(result, dict) or result.get("status") != "ok":
                continue
            mine.update({f"{name}@{backend}": value for name, value in (result.get("metrics") or {}).items()})
            for column in ("infer_examples_per_s", "latency_p50_ms"):
                costs[f"{column}@{backend}"] = result.get(column)
            costs[f"peak_rss_mb@{backend}"] = (
                result.get("peak_mb") if result.get("memory_kind") == "RSS" else None
            )
        metrics.append(mine)
        extra.append(costs)
    frame["metrics"] = metrics
    extra_frame = pd.DataFrame(extra, index=frame.index)
    return pd.concat([frame, extra_frame], axis=1) if not extra_frame.empty else frame


# --------------------------------------------------------------------------- statistics


def welch_one_sided(baseline: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """p-values of 'current is lower' and 'current is higher' (Welch's t-test)."""
    return welch_pvalue(current, baseline, "less"), welch_pvalue(current, baseline, "greater")


def minimum_detectable_effect(
    baseline: np.ndarray, current: np.ndarray, alpha: float, power: float = 0.8
) -> float:
    """The drop (points) a one-sided Welch test at `alpha` detects with `power`, given the seed spread."""
    n_b, n_c = len(baseline), len(current)
    spread = math.sqrt(
        (np.var(baseline, ddof=1) * (n_b - 1) + np.var(current, ddof=1) * (n_c - 1)) / (n_b + n_c - 2)
    )
    df = n_b + n_c - 2
    return float(
        (stats.t.ppf(1 - alpha, df) + stats.t.ppf(power, df)) * spread * math.sqrt(1 / n_b + 1 / n_c)
    )


def _unseeded(frame: pd.DataFrame) -> bool:
    """The rows are of a model whose fit the seed does not change (`Adapter.seeded = False`).
    Asked only of one-seed rows: finding the adapters imports every model family."""
    from harness.models.registry import load_adapters

    adapters = load_adapters()
    names = set(frame["adapter"]) if "adapter" in frame else set()
    return bool(names) and all(name in adapters and not adapters[name].seeded for name in names)


def _values(frame: pd.DataFrame, metric: str) -> np.ndarray:
    values = [m.get(metric) for m in frame["metrics"]]
    return np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)


def compare_quality(
    baseline: pd.DataFrame, current: pd.DataFrame, thresholds: Thresholds
) -> list[Comparison]:
    baseline, current = fill_variants(baseline), fill_variants(current)
    results: list[Comparison] = []
    # (comparison, gain: the change in the better direction, p worse, p better)
    pending: list[tuple[Comparison, float, float, float]] = []
    keys_b = _metric_keys(baseline)
    keys_c = _metric_keys(current)
    for task, variant, metric in sorted(keys_b | keys_c):
        b = _values(baseline[(baseline.task == task) & (baseline.variant == variant)], metric)
        c = _values(current[(current.task == task) & (current.variant == variant)], metric)
        row = Comparison(task, variant, metric, "quality", "unchanged", n_baseline=len(b), n_current=len(c))
        if len(b):
            row.baseline_mean = float(b.mean())
        if len(c):
            row.current_mean = float(c.mean())
        sign = 1.0 if higher_is_better(metric) else -1.0  # tests run in the better direction
        b, c = sign * b, sign * c
        in_b, in_c = (task, variant, metric) in keys_b, (task, variant, metric) in keys_c
        if not in_c:
            row.verdict, row.reason = "missing", "in the baseline, not in the current run"
        elif not in_b:
            row.verdict, row.reason = "new", "not in the baseline"
        elif not len(b) and not len(c):
            row.verdict, row.reason = "undefined", "undefined (NaN) on every seed of both sides"
        elif not len(c):
            row.verdict = "regression"
            row.reason = "undefined (NaN) in the current run, defined in the baseline (a constant predictor?)"
        elif not len(b):
            row.verdict, row.reason = "new", "undefined (NaN) in the baseline, defined now"
        else:
            row.delta = row.current_mean - row.baseline_mean
            gain = float(c.mean() - b.mean())
            effect = thresholds.effect_for(task, metric)
            if len(b) >= 2 and len(c) >= 2:
                row.mde = minimum_detectable_effect(b, c, thresholds.alpha)
                pending.append((row, gain, *welch_one_sided(b, c)))
            else:
                unseeded = _unseeded(current[(current.task == task) & (current.variant == variant)])
                _judge_one_seed(row, gain, effect, unseeded)
        results.append(row)
    _judge_seeded(pending, thresholds)
    return results


def _judge_one_seed(row: Comparison, gain: float, effect: float, unseeded: bool) -> None:
    """A side with one seed has no seed noise to test against: the verdict is the tolerance's alone
    (weak), or, for a fit without randomness, certain (a change is the code's or the data's)."""
    if unseeded:
        row.reason = f"a fit without randomness: any change is real; tolerance {effect} points"
    else:
        row.weak = True
        row.reason = f"one seed: absolute tolerance {effect} points only (weak verdict)"
    if gain < -effect:
        row.verdict = "regression"
    elif gain > effect:
        row.verdict = "improvement"


def _judge_seeded(pending: list[tuple[Comparison, float, float, float]], thresholds: Thresholds) -> None:
    """Seeded comparisons, (row, gain, p worse, p better) each: Welch's one-sided p values, Holm-adjusted
    over all of them per direction; a verdict needs significance and a change beyond the effect size."""
    if not pending:
        return
    lower = holm_adjusted([p for _, _, p, _ in pending])
    higher = holm_adjusted([p for _, _, _, p in pending])
    for (row, gain, _, _), p_low, p_high in zip(pending, lower, higher, strict=True):
        effect = thresholds.effect_for(row.task, row.metric)
        if p_low < thresholds.alpha and gain < -effect:
            row.verdict, row.p_value = "regression", p_low
        elif p_high < thresholds.alpha and gain > effect:
            row.verdict, row.p_value = "improvement", p_high
        else:
            row.p_value = min(p_low, p_high)
            row.reason = (
                f"not significant (Holm p={row.p_value:.3g})"
                if row.p_value >= thresholds.alpha
                else f"significant but within {effect} points"
            )


def _metric_keys(frame: pd.DataFrame) -> set[tuple[str, str, str]]:
    return {(r.task, r.variant, name) for r in frame.itertuples() for name in r.metrics}


def _hardware(frame: pd.DataFrame) -> set[tuple]:
    return {tuple(row[k] for k in HARDWARE_KEYS) for _, row in frame.iterrows()}


def compare_cost(baseline: pd.DataFrame, current: pd.DataFrame, alpha: float) -> list[Comparison]:
    baseline, current = fill_variants(baseline), fill_variants(current)
    results = []
    cells = sorted(
        set(zip(baseline.task, baseline.variant, strict=True))
        & set(zip(current.task, current.variant, strict=True))
    )
    for task, variant in cells:
        b_cell = baseline[(baseline.task == task) & (baseline.variant == variant)]
        c_cell = current[(current.task == task) & (current.variant == variant)]
        same_hardware = _hardware(b_cell) == _hardware(c_cell) and len(_hardware(b_cell)) == 1
        for cost in _with_backends(COST_METRICS, baseline.columns):
            if cost.column not in b_cell or cost.column not in c_cell:
                continue
            (b_quiet, b_note), (c_quiet, c_note) = _quiet(b_cell, cost), _quiet(c_cell, cost)
            b = pd.to_numeric(b_quiet[cost.column], errors="coerce").dropna().to_numpy(float)
            c = pd.to_numeric(c_quiet[cost.column], errors="coerce").dropna().to_numpy(float)
            if not len(b) or not len(c):
                continue  # not measured on this device (e.g. CUDA memory on a CPU)
            row = Comparison(
                task, variant, cost.column, "cost", "skipped", float(b.mean()), float(c.mean()),
                n_baseline=len(b), n_current=len(c),
            )  # fmt: skip
            notes = {"baseline": b_note, "current": c_note}
            shared = "; ".join(f"{side} {note}" for side, note in notes.items() if note)
            if not same_hardware:
                row.reason = f"hardware differs: {sorted(_hardware(b_cell))} vs {sorted(_hardware(c_cell))}"
            elif (b_note and len(b_quiet) == len(b_cell)) or (c_note and len(c_quiet) == len(c_cell)):
                row.reason = shared  # every seed of a side timed on a shared machine: no verdict
            else:
                _judge_cost(row, b, c, cost, alpha, shared)
            results.append(row)
    return results


def _judge_cost(
    row: Comparison, b: np.ndarray, c: np.ndarray, cost: CostMetric, alpha: float, shared: str
) -> None:
    """The verdict on one cost: a ratio of medians beyond the tolerance, and significant with
    enough measurements (Mann-Whitney); `shared` says which seeds were left out as contended."""
    ratio = float(np.median(c) / np.median(b))
    row.delta = ratio - 1
    worse = ratio < 1 - cost.tolerance if cost.higher_is_better else ratio > 1 + cost.tolerance
    better = ratio > 1 + cost.tolerance if cost.higher_is_better else ratio < 1 - cost.tolerance
    reasons = [shared] if shared else []
    if (worse or better) and min(len(b), len(c)) >= MIN_FOR_MANN_WHITNEY:
        worse_side = "less" if cost.higher_is_better else "greater"
        alternative = worse_side if worse else ("greater" if worse_side == "less" else "less")
        row.p_value = float(stats.mannwhitneyu(c, b, alternative=alternative).pvalue)
        if row.p_value >= alpha:
            worse = better = False
            reasons.append(f"beyond tolerance but not significant (Mann-Whitney p={row.p_value:.3g})")
    elif worse or better:
        row.weak = True
        reasons.append(
            f"fewer than {MIN_FOR_MANN_WHITNEY} measurements a side: {cost.tolerance:.0%} tolerance only"
        )
    row.verdict = "regression" if worse else "improvement" if better else "unchanged"
    row.reason = "; ".join(reasons)


def _quiet(cell: pd.DataFrame, cost: CostMetric) -> tuple[pd.DataFrame, str | None]:
    """A timed cost's seeds measured with the machine to themselves (all of them when every seed
    shared it), and a note when any shared it (`report.scores.quiet_seeds`)."""
    return quiet_seeds(cell, cost.phase) if cost.phase is not None else (cell, None)


def _with_backends(costs: tuple[CostMetric, ...], columns) -> list[CostMetric]:
    """The cost metrics, and each one's per-backend column (`latency_p50_ms@onnx`) present."""
    found = list(costs)
    for cost in costs:
        found += [
            CostMetric(column, cost.higher_is_better, cost.tolerance, "deploy")
            for column in columns
            if isinstance(column, str) and column.startswith(f"{cost.column}@")
        ]
    return found


def compare(baseline: pd.DataFrame, current: pd.DataFrame, thresholds: Thresholds) -> list[Comparison]:
    results = compare_quality(baseline, current, thresholds)
    if thresholds.compare_cost:
        results += compare_cost(baseline, current, thresholds.alpha)
    return results


# --------------------------------------------------------------------------- output


def has_regression(results: list[Comparison]) -> bool:
    return any(r.verdict in ("regression", "missing") for r in results)


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _delta(row: Comparison) -> str:
    if row.delta is None:
        return ""
    return f"{row.delta:+.1%}" if row.kind == "cost" else f"{row.delta:+.2f}"


def table_rows(results: list[Comparison]) -> list[list[str]]:
    return [
        [
            r.task,
            r.variant,
            r.metric,
            r.verdict + (" (weak)" if r.weak else ""),
            _num(r.baseline_mean),
            _num(r.current_mean),
            _delta(r),
            _num(r.p_value, 3),
            f"{r.n_baseline}/{r.n_current}",
            _num(r.mde),
            r.reason,
        ]
        for r in results
    ]


HEADERS = [
    "task",
    "variant",
    "metric",
    "verdict",
    "baseline",
    "current",
    "Δ",
    "p",
    "seeds b/c",
    "MDE",
    "note",
]


def to_markdown(results: list[Comparison], baseline: str, current: str) -> str:
    regressions = [r for r in results if r.verdict in ("regression", "missing")]
    status = f"**{len(regressions)} regression(s)**" if regressions else "**no regression**"
    lines = [
        f"## harness compare: {status}",
        "",
        f"baseline `{baseline}` → current `{current}`",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table_rows(results)
    ]
    return "\n".join(lines) + "\n"


def to_junit(results: list[Comparison]) -> str:
    failures = sum(r.verdict in ("regression", "missing") for r in results)
    skipped = sum(r.verdict == "skipped" for r in results)
    suite = ElementTree.Element(
        "testsuite",
        name="harness-compare",
        tests=str(len(results)),
        failures=str(failures),
        skipped=str(skipped),
    )
    for r in results:
        case = ElementTree.SubElement(suite, "testcase", classname=f"{r.task}.{r.variant}", name=r.metric)
        detail = json.dumps({k: v for k, v in asdict(r).items() if v not in (None, "")}, default=str)
        if r.verdict in ("regression", "missing"):
            ElementTree.SubElement(
                case, "failure", message=f"{r.verdict}: {r.name} {_delta(r)}"
            ).text = detail
        elif r.verdict == "skipped":
            ElementTree.SubElement(case, "skipped", message=r.reason)
        else:
            ElementTree.SubElement(case, "system-out").text = detail
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)
