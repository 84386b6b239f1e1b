#!/usr/bin/env bash
# The family panel's phase 1 (benchmarks/configs/families_e40.yaml): CE and every weakening location, family by
# family, selection seeds 0-2, step-100. Resumable (finished runs are skipped). Run it from a worktree at the spec's
# commit and point RESULTS at main's results file, e.g.
#   git worktree add /work/suite-families <commit> && cd /work/suite-families
#   RESULTS=/work/main/benchmarks/results/families_e40.jsonl nohup bash benchmarks/families.sh &
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC=benchmarks/configs/families_e40.yaml
RESULTS=${RESULTS:-benchmarks/results/families_e40.jsonl}
PYTHON=${PYTHON:-python}
for family in ${FAMILIES:-convnext vit mobilenetv3 regnet}; do
    "$PYTHON" benchmarks/accuracy_suite.py --spec "$SPEC" --results "$RESULTS" --suite main --only ce \
        --profiles "step100_$family" --seeds 0 1 2 --jobs "${JOBS:-2}"
    "$PYTHON" benchmarks/accuracy_suite.py --spec "$SPEC" --results "$RESULTS" --suite ablations \
        --profiles "step100_$family" --seeds 0 1 2 --jobs "${JOBS:-2}"
done
