"""What the progress rule weakened, from the per-epoch histories the accuracy suite keeps.

    python benchmarks/progress_probabilities.py [--results benchmarks/results/fmnist_lt_e200_confirm.jsonl]

For every run of ``--cell`` in each profile: the mean weakening probability of the five largest and the
five smallest classes over epoch spans, averaged over seeds, and which classes the rule left nearly intact
(mean probability under 0.1 over epochs 20-159). The numbers behind docs/RESULTS.md, "What the progress
rule does".
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SPANS = ((0, 60), (60, 160), (160, 200))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="benchmarks/results/fmnist_lt_e200_confirm.jsonl")
    parser.add_argument("--cell", default="progress_logit_adjustment")
    args = parser.parse_args(argv)
    runs = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]
    runs = [run for run in runs if run["cell"] == args.cell and run.get("history")]
    for profile in sorted({run["profile"] for run in runs}):
        chosen = [run for run in runs if run["profile"] == profile]
        spans = {span: ([], []) for span in SPANS}
        for run in chosen:
            counts, names = run["train_class_counts"], run["class_names"]
            order = sorted(range(len(counts)), key=lambda c: -counts[c])
            large, small = order[:len(order) // 2], order[len(order) // 2:]
            probabilities = [epoch["train_weakening_probabilities"] for epoch in run["history"]]
            for (start, stop), (large_means, small_means) in spans.items():
                epochs = probabilities[start:stop]
                large_means.append(statistics.mean(statistics.mean(p[c] for c in large) for p in epochs))
                small_means.append(statistics.mean(statistics.mean(p[c] for c in small) for p in epochs))
            middle = probabilities[20:160]
            intact = [names[c] for c in range(len(counts)) if statistics.mean(p[c] for p in middle) < 0.1]
            print(f"{profile} seed {run['seed']}: mean p < 0.1 over epochs 20-159: {', '.join(intact) or 'none'}")
        for (start, stop), (large_means, small_means) in spans.items():
            print(f"{profile}, {len(chosen)} runs, epochs {start}-{stop - 1}: largest half {statistics.mean(large_means):.2f}, "
                  f"smallest half {statistics.mean(small_means):.2f}")


if __name__ == "__main__":
    main()
