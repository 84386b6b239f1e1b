"""Tables and analysis plots from the accuracy suite's results (benchmarks/accuracy_suite.py).

    python benchmarks/report.py                                  # default results file, writes docs/
    python benchmarks/report.py --results FILE --docs docs --spec benchmarks/configs/fmnist_lt_e40.yaml
    python benchmarks/report.py --spec benchmarks/configs/fmnist_lt_gpu_r32_e100.yaml --section gpu \
        --heading "GPU, ResNet-32, 100 epochs" --plot_prefix gpu_ \
        --plot_label "ResNet-32, 100 epochs, NVIDIA H200"          # results file named after the spec
    python benchmarks/report.py --spec benchmarks/configs/families_e40.yaml --section families_confirm --no_plots \
        --seeds 3 4 5 6 7 --summary_seeds 0 1 2 --profiles step100_convnext   # fresh seeds, summary chosen on 0-2
    python benchmarks/report.py --spec benchmarks/configs/families_e40.yaml --section families_exp100 --no_plots \
        --seeds 3 4 5 6 7 --summary_seeds 0 1 2 --summary_chosen_on exp100=step100 --profiles exp100_convnext

Tables (markdown, percent, mean ± sample std over seeds, last-epoch metrics, never best-on-test):
  * main suite, one table per profile: class-/image-averaged accuracy, major/minor (step) or
    many/medium/few-shot (exp) accuracy, mean wall time per run;
  * paired differences vs CE on the same seed (class-averaged and minor / few-shot accuracy), and
    between the pairs of cells the spec lists under ``comparisons``;
  * ablations (step100), with the main `weakening` cell as the default and `ce` as the baseline;
  * with --summary_seeds, first a summary: per profile the best re-balancer alone against the best Procrustean
    cell, both chosen on those seeds and reported on --seeds (fresh ones, in a confirmation).
They are printed and written into docs/RESULTS.md between the markers
``<!-- report:tables:start -->`` and ``<!-- report:tables:end -->`` (``--section`` names another pair, so
several result files share one RESULTS.md; text outside the markers is never touched).

Plots (docs/*.png), from the diagnosed runs (ce, weakening) of profile step100, mean over seeds with a
min-max band: clean training accuracy of major vs minor classes, per-class feature-gradient norm of
major vs minor classes, minor-class clean train vs test accuracy.

Everything that computes or formats is a pure function (tested in tests/test_report.py); only
`main`, `write_results_md` and the `plot_*` functions touch files.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def markers(section: str = "tables") -> Tuple[str, str]:
    """The start and end markers of a named section of RESULTS.md."""
    return f"<!-- report:{section}:start -->", f"<!-- report:{section}:end -->"


START_MARKER, END_MARKER = markers("tables")
DEFAULT_SPEC = ROOT / "benchmarks" / "configs" / "fmnist_lt_e40.yaml"
MIN_SEEDS = 3                 # fewer seeds than this: the cell is marked incomplete
INCOMPLETE = "†"
BASELINE = "ce"
DEFAULT_CELL = "weakening"    # the ablations' reference: the main suite's weakening cell
PLOT_PROFILE = "step100"
PLOT_METHODS = (("ce", "CE", "tab:blue"), ("weakening", "Weakening", "tab:orange"),
                ("progress", "Weakening, progress rule", "tab:green"))  # those present in the results

# (final-dict key, column title) per profile kind; "step" profiles report major/minor halves,
# the others the many/medium/few-shot groups.
COMMON_COLUMNS = [("eval_class_averaged_accuracy", "Class-avg acc"),
                  ("eval_image_averaged_accuracy", "Image-avg acc")]
STEP_COLUMNS = [("eval_major_class_accuracy", "Major"), ("eval_minor_class_accuracy", "Minor")]
SHOT_COLUMNS = [("eval_many_shot_accuracy", "Many"), ("eval_medium_shot_accuracy", "Medium"),
                ("eval_few_shot_accuracy", "Few")]


# ----------------------------------------------------------------------------------------------- loading
def parse_records(lines: Iterable[str]) -> Tuple[List[Dict[str, Any]], List[str]]:
    """JSON lines -> records (the last line with a given key wins), plus warnings for unreadable lines.

    A line that does not parse (e.g. one being appended while we read) is skipped with a warning."""
    by_key: Dict[str, Dict[str, Any]] = {}
    problems = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"line {number}: not valid JSON, skipped")
            continue
        key = record.get("key") or f"{record.get('suite')}/{record.get('cell')}/{record.get('profile')}/seed{record.get('seed')}"
        by_key[key] = record
    return list(by_key.values()), problems


def load_records(path: Path) -> Tuple[List[Dict[str, Any]], List[str]]:
    path = Path(path)
    if not path.exists():
        return [], [f"{path} does not exist yet"]
    return parse_records(path.read_text().splitlines())


def load_spec(path: Path) -> Dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def select(records: Sequence[Dict[str, Any]], suite: Optional[str] = None, cell: Optional[str] = None,
           profile: Optional[str] = None) -> List[Dict[str, Any]]:
    return [r for r in records if (suite is None or r.get("suite") == suite)
            and (cell is None or r.get("cell") == cell) and (profile is None or r.get("profile") == profile)]


def ordered_cells(spec_order: Sequence[str], present: Iterable[str]) -> List[str]:
    """The spec's order, then cells found in the results but not in the spec (sorted)."""
    present = set(present)
    return [c for c in spec_order if c in present] + sorted(present - set(spec_order))


def columns_for(profile: str) -> List[Tuple[str, str]]:
    return COMMON_COLUMNS + (STEP_COLUMNS if profile.startswith("step") else SHOT_COLUMNS)


def tail_metric(profile: str) -> Tuple[str, str]:
    """The metric of the smallest classes: minor half (step) or few-shot group (exp)."""
    return STEP_COLUMNS[1] if profile.startswith("step") else SHOT_COLUMNS[2]


# ----------------------------------------------------------------------------------------------- aggregation
def _finite(values: Iterable[Any]) -> List[float]:
    out = []
    for v in values:
        if v is None:
            continue
        v = float(v)
        if math.isfinite(v):
            out.append(v)
    return out


def mean_std(values: Iterable[Any]) -> Tuple[float, float, int]:
    """(mean, sample std with ddof=1, n) of the finite, non-None values; nan where undefined."""
    vals = _finite(values)
    n = len(vals)
    if n == 0:
        return math.nan, math.nan, 0
    arr = np.asarray(vals, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if n > 1 else math.nan), n


def aggregate(records: Sequence[Dict[str, Any]], metrics: Sequence[str]) -> Dict[str, Any]:
    """One cell's runs -> {"n": seeds, metric: (mean, std, n), "wall_seconds": (mean, std, n), "threads": set}."""
    out: Dict[str, Any] = {"n": len({r.get("seed") for r in records})}
    for metric in metrics:
        out[metric] = mean_std((r.get("final") or {}).get(metric) for r in records)
    out["wall_seconds"] = mean_std(r.get("wall_seconds") for r in records)
    out["threads"] = sorted({r.get("threads") for r in records if r.get("threads") is not None})
    return out


def paired_differences(records: Sequence[Dict[str, Any]], baseline: Sequence[Dict[str, Any]],
                       metric: str) -> Dict[str, Any]:
    """Per-seed differences ``record - baseline`` (same seed) of one final metric.

    Returns {"diffs": {seed: d}, "mean", "std" (ddof=1), "n", "improved" (d > 0 count)}."""
    base = {r.get("seed"): (r.get("final") or {}).get(metric) for r in baseline}
    diffs = {}
    for r in records:
        seed = r.get("seed")
        value, ref = (r.get("final") or {}).get(metric), base.get(seed)
        if value is None or ref is None or not (math.isfinite(value) and math.isfinite(ref)):
            continue
        diffs[seed] = float(value) - float(ref)
    mean, std, n = mean_std(diffs.values())
    return {"diffs": dict(sorted(diffs.items())), "mean": mean, "std": std, "n": n,
            "improved": sum(d > 0 for d in diffs.values()), "interval": bootstrap_interval(list(diffs.values()))}


def bootstrap_interval(diffs: Sequence[float], confidence: float = 0.95, resamples: int = 10000,
                       seed: int = 0) -> Tuple[float, float]:
    """Paired bootstrap percentile interval of the mean difference: seeds resampled with replacement.

    With 3-5 seeds it is coarse (it cannot be wider than the spread of the seeds' own differences), so
    read it together with the sign count. (nan, nan) with fewer than 2 pairs."""
    values = np.asarray(_finite(diffs), dtype=float)
    if values.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def fmt_interval(interval: Tuple[float, float], scale: float = 100.0) -> str:
    low, high = interval
    if not (math.isfinite(low) and math.isfinite(high)):
        return "—"
    return f"[{low * scale:+.1f}, {high * scale:+.1f}]"


def clean_minor_train_accuracy(record: Dict[str, Any]) -> Optional[float]:
    """Last evaluated clean (eval-mode, un-augmented) training accuracy of the smallest classes: the regime.

    Near 1 with a low minor test accuracy is the over-fitting regime; far below 1, the under-fitting one."""
    counts = record.get("train_class_counts")
    history = [h for h in record.get("history") or [] if h.get("train_clean_per_class_accuracy")]
    if not counts or not history:
        return None
    smallest = min(counts)
    per_class = history[-1]["train_clean_per_class_accuracy"]
    values = [a for a, n in zip(per_class, counts) if n == smallest and a is not None]
    return float(np.mean(values)) if values else None


# ----------------------------------------------------------------------------------------------- formatting
def fmt_mean_std(mean: float, std: float, n: int, scale: float = 100.0, signed: bool = False,
                 min_n: int = MIN_SEEDS) -> str:
    """'81.2 ± 0.4' (percent, 1 decimal); '—' without data; a trailing † when n < min_n."""
    if n == 0 or not math.isfinite(mean):
        return "—"
    sign = "+" if signed else ""
    text = f"{mean * scale:{sign}.1f}"
    text += f" ± {std * scale:.1f}" if math.isfinite(std) else " ± –"
    return text + (INCOMPLETE if n < min_n else "")


def fmt_seconds(mean: float) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.0f}" if mean < 600 else f"{mean:.0f} ({mean / 60:.0f} min)"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Optional[Sequence[str]] = None) -> str:
    """A GitHub markdown table; ``align`` per column: 'l' or 'r' (default: first left, the rest right)."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _threads_note(threads: Iterable[Any]) -> str:
    threads = sorted({t for t in threads if t is not None})
    if not threads:
        return ""
    return f" Wall time: seconds per run at {', '.join(map(str, threads))} torch thread(s) each."


def main_table(records: Sequence[Dict[str, Any]], profile: str, cell_order: Sequence[str],
               suite: str = "main", heading: str = "Main suite") -> Optional[str]:
    runs = select(records, suite=suite, profile=profile)
    if not runs:
        return None
    columns = columns_for(profile)
    regime = any(clean_minor_train_accuracy(r) is not None for r in runs)
    header = (["Method", "Seeds"] + [title for _, title in columns]
              + (["Smallest classes, clean train"] if regime else []) + ["Wall (s)"])
    rows, threads = [], set()
    for cell in ordered_cells(cell_order, {r["cell"] for r in runs}):
        cell_runs = select(runs, cell=cell)
        agg = aggregate(cell_runs, [k for k, _ in columns])
        threads.update(agg["threads"])
        fitted = [fmt_mean_std(*mean_std(clean_minor_train_accuracy(r) for r in cell_runs))] if regime else []
        rows.append([f"`{cell}`", f"{agg['n']}" + (INCOMPLETE if agg["n"] < MIN_SEEDS else "")]
                    + [fmt_mean_std(*agg[k]) for k, _ in columns] + fitted + [fmt_seconds(agg["wall_seconds"][0])])
    title = f"### {heading}, {profile}: test accuracy (%), mean ± std over seeds"
    note = "Last-epoch test accuracy on the balanced test set."
    if regime:
        note += (" 'Smallest classes, clean train': accuracy of the smallest classes on their own training images, "
                 "eval mode, no augmentation, at the last evaluation (near 100 with a low test accuracy: over-fitting).")
    return "\n\n".join([title, markdown_table(header, rows), note + _threads_note(threads)])


def _paired_row(label: str, runs: Sequence[Dict[str, Any]], base: Sequence[Dict[str, Any]], tail_key: str) -> List[str]:
    """label, pairs, Δ class-avg, improved count, Δ tail metric, improved count (runs minus base, per seed)."""
    d_avg = paired_differences(runs, base, "eval_class_averaged_accuracy")
    d_tail = paired_differences(runs, base, tail_key)
    return [label, f"{d_avg['n']}" + (INCOMPLETE if d_avg["n"] < MIN_SEEDS else ""),
            fmt_mean_std(d_avg["mean"], d_avg["std"], d_avg["n"], signed=True), fmt_interval(d_avg["interval"]),
            f"{d_avg['improved']}/{d_avg['n']}",
            fmt_mean_std(d_tail["mean"], d_tail["std"], d_tail["n"], signed=True), f"{d_tail['improved']}/{d_tail['n']}"]


def paired_table(records: Sequence[Dict[str, Any]], profile: str, cell_order: Sequence[str],
                 suite: str = "main", baseline_cell: str = BASELINE, heading: str = "Main suite") -> Optional[str]:
    base = select(records, suite="main", cell=baseline_cell, profile=profile)
    runs = [r for r in select(records, suite=suite, profile=profile) if r.get("cell") != baseline_cell]
    if not base or not runs:
        return None
    tail_key, tail_title = tail_metric(profile)
    header = ["Method", "Pairs", "Δ class-avg (pp)", "95% CI", "Improved", f"Δ {tail_title.lower()} (pp)", "Improved"]
    rows = [_paired_row(f"`{cell}`", select(runs, cell=cell), base, tail_key)
            for cell in ordered_cells(cell_order, {r["cell"] for r in runs})]
    title = f"### {heading}, {profile}: paired difference vs `{baseline_cell}` (same seed)"
    note = (f"Per seed: method minus `{baseline_cell}` trained with the same seed, in percentage points; mean ± std "
            f"over the pairs; 95% CI: paired bootstrap over seeds; 'Improved': pairs with a positive difference.")
    return "\n\n".join([title, markdown_table(header, rows), note])


def comparison_table(records: Sequence[Dict[str, Any]], profile: str,
                     pairs: Sequence[Sequence[str]], heading: str = "Main suite",
                     title: Optional[str] = None, paired_by: str = "seed") -> Optional[str]:
    """The spec's ``comparisons``: cell A minus cell B of the main suite, paired by seed."""
    tail_key, tail_title = tail_metric(profile)
    rows = []
    for cell, other in pairs:
        runs, base = (select(records, suite="main", cell=c, profile=profile) for c in (cell, other))
        if runs and base:
            rows.append(_paired_row(f"`{cell}` − `{other}`", runs, base, tail_key))
    if not rows:
        return None
    header = ["Comparison", "Pairs", "Δ class-avg (pp)", "95% CI", "A better", f"Δ {tail_title.lower()} (pp)",
              "A better"]
    title = title or f"### {heading}, {profile}: head-to-head (same {paired_by})"
    return "\n\n".join([title, markdown_table(header, rows),
                        f"A minus B per {paired_by}, in percentage points; mean ± std over the pairs; 95% CI: paired "
                        f"bootstrap over {'seeds' if paired_by == 'seed' else 'the pairs'}."])


def pooled_comparison_table(records: Sequence[Dict[str, Any]], profiles: Sequence[str],
                            pairs: Sequence[Sequence[str]], heading: str = "Main suite") -> Optional[str]:
    """The ``comparisons`` over several profiles of one kind at once, paired by (profile, seed).

    A summary across profiles (e.g. the class orders of one imbalance), not a test any spec pre-registered:
    the bootstrap treats every (profile, seed) pair alike, so read it beside the per-profile tables."""
    if len({tail_metric(p) for p in profiles}) != 1:
        raise ValueError(f"--pool takes profiles of one kind (all step or all exp), got {', '.join(profiles)}")
    pooled = [{**r, "seed": (r["profile"], r.get("seed")), "profile": profiles[0]}
              for r in records if r.get("profile") in profiles]
    return comparison_table(pooled, profiles[0], pairs, title=f"### {heading}, pooled over {', '.join(profiles)}: "
                            "head-to-head (same profile and seed)", paired_by="profile and seed")


@dataclass(frozen=True)
class SuccessBar:
    """Issue 9's pre-registered bar (written into the confirmation spec's header before any of its runs): a
    weakening cell beats the best non-weakening cell of ``profile`` by >= ``margin`` class-averaged on >=
    ``wins`` of the ``seeds`` fresh seeds, with a paired bootstrap 95% interval above 0, and is no worse than
    that cell (within one std of it) on every other profile."""

    profile: str = "step100"
    margin: float = 0.01
    wins: int = 4
    seeds: int = 5


def _weakening_cells(spec: Dict[str, Any]) -> List[str]:
    return [c for c, v in (spec.get("main") or {}).items() if ((v or {}).get("overrides") or {}).get("weakening")]


def summary_table(records: Sequence[Dict[str, Any]], spec: Dict[str, Any], choose_seeds: Sequence[int],
                  report_seeds: Optional[Sequence[int]] = None, heading: str = "Main suite",
                  chosen_on: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Per profile, the best re-balancer alone against the best Procrustean cell: each chosen by its mean
    class-averaged accuracy on ``choose_seeds``, then reported on ``report_seeds`` (fresh seeds; the choosing
    seeds themselves where None, which the title then says), with the paired Δ, its interval, the sign count and
    where the weakening was (the runs' resolved location, else the cell's option).

    ``chosen_on`` maps a reported profile to the profile its choice is made on (exp-100 reported with the cells
    step-100's selection seeds chose, so nothing is chosen on exp-100 itself); only the mapped profiles get rows."""
    metric = "eval_class_averaged_accuracy"
    weakening = _weakening_cells(spec)
    main_cells = spec.get("main") or {}
    reported = report_seeds if report_seeds is not None else choose_seeds
    present_profiles = {r.get("profile") for r in records}
    if chosen_on:
        present_profiles &= set(chosen_on)
    rows = []
    for profile in ordered_cells(list(spec.get("profiles") or {}), present_profiles):
        runs = select(records, suite="main", profile=profile)
        choice_runs = select(records, suite="main", profile=chosen_on[profile]) if chosen_on else runs
        chosen = [r for r in choice_runs if r.get("seed") in choose_seeds]

        def best(cells: Iterable[str]) -> Optional[str]:
            scored = [(mean_std((r.get("final") or {}).get(metric) for r in select(chosen, cell=c))[0], c)
                      for c in cells]
            scored = [(m, c) for m, c in scored if math.isfinite(m)]
            return max(scored)[1] if scored else None

        present = ordered_cells(list(main_cells), {r["cell"] for r in runs})
        rebalancer = best(c for c in present if c not in weakening and c != BASELINE)
        procrustean = best(c for c in present if c in weakening)
        if rebalancer is None or procrustean is None:
            continue
        shown = [r for r in runs if r.get("seed") in reported]
        weakened, alone = select(shown, cell=procrustean), select(shown, cell=rebalancer)
        if not weakened or not alone:
            continue
        d = paired_differences(weakened, alone, metric)
        option = ((main_cells.get(procrustean) or {}).get("overrides") or {}).get("weakening_location", "default")
        locations = sorted({str(r.get("weakening_location") or option) for r in weakened})
        accuracy = [fmt_mean_std(*mean_std((r.get("final") or {}).get(metric) for r in cell_runs))
                    for cell_runs in (alone, weakened)]
        rows.append([profile, f"`{rebalancer}` {accuracy[0]}", f"`{procrustean}` {accuracy[1]}",
                     fmt_mean_std(d["mean"], d["std"], d["n"], signed=True), fmt_interval(d["interval"]),
                     f"{d['improved']}/{d['n']}", ", ".join(f"`{loc}`" for loc in locations)])
    if not rows:
        return None
    chose, seeds = (" ".join(map(str, s)) for s in (choose_seeds, reported))
    if chosen_on:
        sources = ", ".join(sorted(set(chosen_on.values())))
        how = f"chosen on {sources}, seeds {chose}; reported on seeds {seeds}"
    elif set(reported) == set(choose_seeds):
        how = f"chosen and reported on seeds {chose}: no fresh seeds"
    elif set(reported) & set(choose_seeds):
        how = f"chosen on seeds {chose}, reported on seeds {seeds}, not all fresh"
    else:
        how = f"chosen on seeds {chose}, reported on fresh seeds {seeds}"
    header = ["Profile", "Best re-balancer alone", "Best Procrustean", "Δ class-avg (pp)", "95% CI", "Seeds better",
              "Location"]
    return "\n\n".join([f"### {heading}: best re-balancer vs best Procrustean ({how})", markdown_table(header, rows),
                         "Class-averaged test accuracy (%), mean ± std over the reported seeds; Δ: Procrustean minus "
                         "re-balancer, paired by seed, 95% CI by paired bootstrap."])


def success_bar_report(records: Sequence[Dict[str, Any]], spec: Dict[str, Any], bar: SuccessBar = SuccessBar()) -> Optional[str]:
    """The bar checked on the results as they stand: met, not met, or pending (and whether it still can be met)."""
    metric = "eval_class_averaged_accuracy"
    candidates = _weakening_cells(spec)
    others = [c for c in (spec.get("main") or {}) if c not in candidates]
    primary = select(records, suite="main", profile=bar.profile)
    means = {c: aggregate(select(primary, cell=c), [metric])[metric] for c in others}
    means = {c: m for c, m in means.items() if m[2]}
    if not candidates or not means:
        return None
    best = max(means, key=lambda c: means[c][0])
    best_done = means[best][2] >= bar.seeds
    header = ["Weakening cell", "Seeds", f"Δ vs `{best}` per seed (pp)", f"Seeds ≥ +{bar.margin * 100:.1f}",
              "Mean Δ (pp)", "95% CI", f"Primary ({bar.profile})"]
    rows, verdicts = [], {}
    for cell in candidates:
        d = paired_differences(select(primary, cell=cell), select(primary, cell=best), metric)
        diffs = list(d["diffs"].values())
        reached = sum(x >= bar.margin for x in diffs)
        missed = len(diffs) - reached
        low = d["interval"][0]
        if missed > bar.seeds - bar.wins:
            verdict = "not met" if best_done else f"cannot be met against `{best}` (leader so far)"
        elif len(diffs) >= bar.seeds and best_done:
            verdict = "met" if reached >= bar.wins and math.isfinite(low) and low > 0 else "not met"
        else:
            verdict = "pending"
        verdicts[cell] = verdict
        rows.append([f"`{cell}`", f"{d['n']}/{bar.seeds}", ", ".join(f"{x * 100:+.1f}" for x in diffs) or "—",
                     f"{reached}/{d['n']}", fmt_mean_std(d["mean"], d["std"], d["n"], signed=True),
                     fmt_interval(d["interval"]), verdict])
    parts = ["### The pre-registered success bar, checked on the runs so far",
             f"Best non-weakening method on {bar.profile} (class-averaged mean over its {means[best][2]} seeds): "
             f"`{best}`, {fmt_mean_std(*means[best])}"
             + ("" if best_done else f" (not final: {means[best][2]} of {bar.seeds} seeds)") + ".",
             markdown_table(header, rows)]
    secondary = []
    for profile in ordered_cells(list(spec.get("profiles") or {}), {r.get("profile") for r in records}):
        if profile == bar.profile:
            continue
        runs = select(records, suite="main", profile=profile)
        reference = select(runs, cell=best)
        ref_mean, ref_std, ref_n = aggregate(reference, [metric])[metric]
        for cell in candidates:
            d = paired_differences(select(runs, cell=cell), reference, metric)
            if not d["n"]:
                continue
            done = d["n"] >= bar.seeds and ref_n >= bar.seeds
            if not (done and math.isfinite(ref_std)):
                verdict = "pending"
            else:
                verdict = "no worse" if d["mean"] >= -ref_std else "worse"
            secondary.append([profile, f"`{cell}`", f"{d['n']}/{bar.seeds}",
                              fmt_mean_std(d["mean"], d["std"], d["n"], signed=True),
                              fmt_mean_std(ref_mean, ref_std, ref_n), verdict])
    if secondary:
        parts.append(markdown_table(["Profile", "Weakening cell", "Seeds", f"Δ vs `{best}` (pp)",
                                     f"`{best}` (mean ± std)", "Within one std"], secondary))
    parts.append(f"The bar: on ≥ {bar.wins} of {bar.seeds} seeds of {bar.profile}, class-averaged accuracy ≥ "
                 f"{bar.margin * 100:.1f} pp above the best non-weakening method of the table (same seed), with a "
                 "paired bootstrap 95% interval of the mean difference above 0; and on every other profile a mean "
                 "difference no lower than minus that method's std there. 'Cannot be met': more seeds already "
                 f"fall short of the margin than the bar allows ({bar.seeds - bar.wins}), against the current leader.")
    return "\n\n".join(parts)


def _describe(overrides: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items())


def ablation_table(records: Sequence[Dict[str, Any]], spec: Dict[str, Any], profile: str = "step100") -> Optional[str]:
    ablations = select(records, suite="ablations", profile=profile)
    if not ablations:
        return None
    columns = columns_for(profile)
    ce_runs = select(records, suite="main", cell=BASELINE, profile=profile)
    default_runs = select(records, suite="main", cell=DEFAULT_CELL, profile=profile)
    spec_ablations = spec.get("ablations") or {}
    default_desc = _describe(spec.get("ablation_base") or (spec.get("main") or {}).get(DEFAULT_CELL, {}).get("overrides", {}))
    groups: List[Tuple[str, str, List[Dict[str, Any]]]] = [(f"`{BASELINE}` (baseline)", "no weakening", ce_runs)]
    if default_runs:  # a spec whose ablations all change one base (e.g. every location of a family) has none
        groups.append((f"`{DEFAULT_CELL}` (default)", default_desc, default_runs))
    for cell in ordered_cells(list(spec_ablations), {r["cell"] for r in ablations}):
        groups.append((f"`{cell}`", _describe((spec_ablations.get(cell) or {}).get("overrides", {})),
                       select(ablations, cell=cell)))
    header = ["Cell", "Change", "Seeds"] + [title for _, title in columns] + ["Δ class-avg vs CE (pp)", "Improved",
                                                                            "95% CI"]
    rows, threads = [], set()
    for label, desc, runs in groups:
        agg = aggregate(runs, [k for k, _ in columns])
        threads.update(agg["threads"])
        if runs is ce_runs:
            delta, improved, interval = "0 (reference)", "—", "—"
        else:
            d = paired_differences(runs, ce_runs, "eval_class_averaged_accuracy")
            delta, improved = fmt_mean_std(d["mean"], d["std"], d["n"], signed=True), f"{d['improved']}/{d['n']}"
            interval = fmt_interval(d["interval"])
        rows.append([label, desc, f"{agg['n']}" + (INCOMPLETE if agg["n"] < MIN_SEEDS else "")]
                    + [fmt_mean_std(*agg[k]) for k, _ in columns] + [delta, improved, interval])
    title = f"### Ablations, {profile}: test accuracy (%), mean ± std over seeds"
    note = (f"Each ablation changes the default (`{DEFAULT_CELL}` of the main suite) in one option; Δ is paired with "
            f"`{BASELINE}` on the same seed." if default_runs else
            f"Each ablation is `{default_desc}` with the change shown; Δ is paired with `{BASELINE}` on the same seed.") \
        + " 95% CI: paired bootstrap percentile interval of the mean difference (seeds resampled)."
    return "\n\n".join([title, markdown_table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2)), note])


def build_tables(records: Sequence[Dict[str, Any]], spec: Dict[str, Any], source: str = "",
                 heading: str = "Main suite", success_bar: bool = False, pool: Sequence[str] = (),
                 selection: str = "", summary: Optional[str] = None) -> str:
    """All tables as one markdown block (what goes between the markers); ``selection`` says which of the source's
    runs they are (e.g. ", seeds 3 4 5 6 7")."""
    main_order = list(spec.get("main") or {})
    profiles = ordered_cells(list(spec.get("profiles") or {}), {r.get("profile") for r in records if r.get("profile")})
    parts = [f"_Generated by `benchmarks/report.py` from `{source}`{selection} ({len(records)} runs). "
             f"{INCOMPLETE}: fewer than {MIN_SEEDS} seeds (incomplete); '± –': one seed, no std._"]
    for profile in profiles:
        for table in (main_table(records, profile, main_order, heading=heading),
                      paired_table(records, profile, main_order, heading=heading),
                      comparison_table(records, profile, spec.get("comparisons") or [], heading=heading)):
            if table:
                parts.append(table)
    for profile in spec.get("ablation_profiles") or ["step100"]:
        table = ablation_table(records, spec, profile)
        if table:
            parts.append(table)
    if pool:
        table = pooled_comparison_table(records, pool, spec.get("comparisons") or [], heading=heading)
        if table:
            parts.append(table)
    if summary:
        parts.insert(1, summary)
    if success_bar:
        bar = success_bar_report(records, spec)
        if bar:
            parts.append(bar)
    if len(parts) == 1:
        parts.append("No finished runs yet.")
    machines = sorted({r["machine"] + (f", {r['accelerator']}" if r.get("accelerator", "cpu") != "cpu" else "")
                       for r in records if r.get("machine")})
    if machines:
        parts.append("Machine(s): " + "; ".join(machines) + ".")
    return "\n\n".join(parts)


def replace_between_markers(text: str, content: str, start: str = START_MARKER, end: str = END_MARKER) -> str:
    """Put ``content`` between the markers; text outside them is kept byte for byte.

    Without (both) markers the block is appended at the end."""
    block = f"{start}\n{content.strip()}\n{end}"
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if i < 0 or j < 0:
        return text + ("" if not text or text.endswith("\n") else "\n") + ("\n" if text else "") + block + "\n"
    return text[:i] + block + text[j + len(end):]


def new_results_md(content: str, start: str = START_MARKER, end: str = END_MARKER) -> str:
    return ("# Results\n\nThe tables below are generated by benchmarks/report.py; edit text outside the markers only.\n\n"
            + replace_between_markers("", content, start, end).lstrip())


# ----------------------------------------------------------------------------------------------- plot data
def major_minor_split(counts: Sequence[int]) -> Tuple[List[int], List[int]]:
    """Major = classes with more training images than the median, minor = the rest.

    When that leaves no major class (e.g. balanced counts), the first half by count is major."""
    counts = np.asarray(counts, dtype=float)
    major = [int(i) for i in np.flatnonzero(counts > np.median(counts))]
    if not major:
        order = np.argsort(-counts, kind="stable")
        major = sorted(int(i) for i in order[: len(counts) // 2])
    minor = [i for i in range(len(counts)) if i not in set(major)]
    return major, minor


def group_series(history: Sequence[Dict[str, Any]], key: str, classes: Sequence[int]) -> Dict[int, float]:
    """{epoch: mean over ``classes`` of history[epoch][key][c]} (None entries ignored; epochs without data skipped)."""
    out = {}
    for row in history:
        values = row.get(key)
        if not values:
            continue
        vals = _finite(values[c] for c in classes if c < len(values))
        if vals:
            out[int(row["epoch"])] = float(np.mean(vals))
    return out


def band(series_per_seed: Sequence[Dict[int, float]]) -> Optional[Dict[str, np.ndarray]]:
    """Align per-seed {epoch: value} on the union of epochs -> epochs, mean, min, max (nan-aware)."""
    series_per_seed = [s for s in series_per_seed if s]
    if not series_per_seed:
        return None
    epochs = sorted(set().union(*series_per_seed))
    mat = np.array([[s.get(e, np.nan) for e in epochs] for s in series_per_seed], dtype=float)
    with warnings.catch_warnings():  # an epoch where every seed is nan stays nan, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"epochs": np.asarray(epochs), "mean": np.nanmean(mat, 0), "min": np.nanmin(mat, 0),
                "max": np.nanmax(mat, 0), "n": len(series_per_seed)}


def diagnosed_runs(records: Sequence[Dict[str, Any]], cell: str, profile: str = PLOT_PROFILE) -> List[Dict[str, Any]]:
    return [r for r in select(records, suite="main", cell=cell, profile=profile)
            if r.get("history") and r.get("train_class_counts")]


def curves(runs: Sequence[Dict[str, Any]], key: str, group: str) -> Optional[Dict[str, np.ndarray]]:
    """Mean/min/max over seeds of a per-class history key averaged over the 'major' or 'minor' classes."""
    per_seed = []
    for r in runs:
        major, minor = major_minor_split(r["train_class_counts"])
        per_seed.append(group_series(r["history"], key, major if group == "major" else minor))
    return band(per_seed)


# ----------------------------------------------------------------------------------------------- plots (I/O)
def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(111)


def _draw(ax, data, colour, style, label, log=False):
    x, mean, lo, hi = data["epochs"], data["mean"], data["min"], data["max"]
    if log:  # nothing non-positive on a log axis
        mean, lo, hi = (np.where(a > 0, a, np.nan) for a in (mean, lo, hi))
    ax.plot(x, mean, color=colour, linestyle=style, linewidth=1.6, label=f"{label} (n={data['n']})")
    if data["n"] > 1:
        ax.fill_between(x, lo, hi, color=colour, alpha=0.15, linewidth=0)


def _save(fig, ax, path: Path, title: str, ylabel: str) -> Path:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _plot_lines(records, path: Path, lines, title: str, ylabel: str, log: bool = False,
                note=print, label: str = PLOT_PROFILE) -> Optional[Path]:
    """One figure, CE vs weakening: ``lines`` = (history key, class group, line style, label) tuples."""
    fig, ax = _figure()
    drawn = False
    for cell, name, colour in PLOT_METHODS:
        runs = diagnosed_runs(records, cell)
        if not runs:
            note(f"  {path.name}: no diagnosed `{cell}` runs of {PLOT_PROFILE} yet")
            continue
        for key, group, style, what in lines:
            data = curves(runs, key, group)
            if data is not None:
                _draw(ax, data, colour, style, f"{name}, {what}", log=log)
                drawn = True
    if not drawn:
        note(f"  skipped {path.name}: no history for it yet")
        return None
    if log:
        ax.set_yscale("log")
    return _save(fig, ax, path, f"{title}\n({label})", ylabel)


def _major_minor(key: str):
    return ((key, "major", "--", "major"), (key, "minor", "-", "minor"))


def plot_train_accuracy(records, path: Path, note=print, label: str = PLOT_PROFILE) -> Optional[Path]:
    return _plot_lines(records, path, _major_minor("train_clean_per_class_accuracy"),
                       "Clean training accuracy, major vs minor classes", "training accuracy", note=note, label=label)


def plot_feature_gradient_norm(records, path: Path, note=print, label: str = PLOT_PROFILE) -> Optional[Path]:
    return _plot_lines(records, path, _major_minor("train_feature_gradient_norm"),
                       "Per-class feature-gradient norm, major vs minor", "mean ||dL/df|| per class", log=True,
                       note=note, label=label)


def plot_minor_train_vs_test(records, path: Path, note=print, label: str = PLOT_PROFILE) -> Optional[Path]:
    lines = (("train_clean_per_class_accuracy", "minor", "-", "minor train"),
             ("eval_per_class_accuracy", "minor", "--", "minor test"))
    return _plot_lines(records, path, lines, "Minor classes: clean train (solid) vs test (dashed) accuracy",
                       "accuracy", note=note, label=label)


def write_plots(records, docs: Path, note=print, prefix: str = "", label: str = PLOT_PROFILE) -> List[Path]:
    docs = Path(docs)
    made = [plot_train_accuracy(records, docs / f"{prefix}train_accuracy_major_minor.png", note=note, label=label),
            plot_feature_gradient_norm(records, docs / f"{prefix}feature_gradient_norm.png", note=note, label=label),
            plot_minor_train_vs_test(records, docs / f"{prefix}minor_train_vs_test.png", note=note, label=label)]
    return [p for p in made if p is not None]


def write_results_md(path: Path, content: str, section: str = "tables") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else None
    start, end = markers(section)
    path.write_text(new_results_md(content, start, end) if text is None
                    else replace_between_markers(text, content, start, end))
    return path


def _display_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=None, help="default: benchmarks/results/<spec name>.jsonl")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="where RESULTS.md and the plots go")
    parser.add_argument("--spec", default=str(DEFAULT_SPEC), help="the suite's yaml (row order, ablation options)")
    parser.add_argument("--section", default="tables", help="the marker pair of RESULTS.md to fill")
    parser.add_argument("--plot_prefix", default="", help="prefix of the plot file names")
    parser.add_argument("--plot_label", default=PLOT_PROFILE, help="appended to the plot titles")
    parser.add_argument("--heading", default="Main suite", help="how the main-suite tables are titled")
    parser.add_argument("--no_plots", action="store_true")
    parser.add_argument("--success_bar", action="store_true",
                        help="check issue 9's pre-registered bar (for the fresh-seed confirmation)")
    parser.add_argument("--pool", nargs="+", default=[], metavar="PROFILE",
                        help="also the comparisons pooled over these profiles of one kind, paired by profile and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="only these seeds' runs (a confirmation's fresh seeds, kept apart from the selection's)")
    parser.add_argument("--profiles", nargs="+", default=None, help="only these profiles' runs")
    parser.add_argument("--summary_seeds", type=int, nargs="+", default=[], metavar="SEED",
                        help="open with a summary: per profile, the best re-balancer alone and the best Procrustean "
                        "cell, chosen on these seeds and reported on --seeds (or on these, if --seeds is not given)")
    parser.add_argument("--summary_chosen_on", default=None, metavar="REPORTED=CHOSEN",
                        help="make the summary's choice on other profiles: exp100=step100 reports exp100_<family> "
                        "with the cells step100_<family> chose on --summary_seeds")
    args = parser.parse_args(argv)
    if args.results is None:
        args.results = str(ROOT / "benchmarks" / "results" / f"{Path(args.spec).stem}.jsonl")

    records, problems = load_records(Path(args.results))
    for message in problems:
        print(f"note: {message}", file=sys.stderr)
    selection = ""
    all_records = records
    if args.profiles is not None:
        records = [r for r in records if r.get("profile") in args.profiles]
        selection += f", profiles {' '.join(args.profiles)}"
    every_seed = records  # the summary chooses on --summary_seeds, which --seeds may leave out
    if args.seeds is not None:
        records = [r for r in records if r.get("seed") in args.seeds]
        selection = f", seeds {' '.join(map(str, args.seeds))}" + selection
    spec = load_spec(Path(args.spec)) if Path(args.spec).exists() else {}
    unknown = [p for p in args.pool if p not in (spec.get("profiles") or {})]
    if unknown:
        parser.error(f"--pool: {', '.join(unknown)} not among the spec's profiles ({', '.join(spec.get('profiles') or {})})")
    if len({tail_metric(p) for p in args.pool}) > 1:
        parser.error(f"--pool takes profiles of one kind (all step or all exp), got {', '.join(args.pool)}")
    chosen_on = None
    if args.summary_chosen_on:
        source, sep, target = args.summary_chosen_on.partition("=")
        reported_profiles = args.profiles or list(spec.get("profiles") or {})
        chosen_on = {p: target + p[len(source):] for p in reported_profiles if p.startswith(source)}
        missing = sorted(set(chosen_on.values()) - set(spec.get("profiles") or {}))
        if not sep or not chosen_on or missing:
            parser.error(f"--summary_chosen_on {args.summary_chosen_on}: expected REPORTED=CHOSEN, two profile "
                         f"prefixes of the spec (e.g. exp100=step100){'; no profile ' + ', '.join(missing) if missing else ''}")
        every_seed = all_records  # the choosing profiles too; summary_table gives rows to chosen_on's keys only
    summary = summary_table(every_seed, spec, args.summary_seeds, args.seeds, heading=args.heading,
                            chosen_on=chosen_on) if args.summary_seeds else None
    tables = build_tables(records, spec, source=_display_path(Path(args.results)), selection=selection,
                          heading=args.heading, success_bar=args.success_bar, pool=args.pool, summary=summary)
    print(tables)
    docs = Path(args.docs)
    md = write_results_md(docs / "RESULTS.md", tables, args.section)
    print(f"\nwrote tables to {md}")
    if not args.no_plots:
        for p in write_plots(records, docs, prefix=args.plot_prefix, label=args.plot_label):
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
