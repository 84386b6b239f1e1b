#!/usr/bin/env bash
# The family panel (benchmarks/configs/families_e40.yaml), family by family. Resumable (finished runs are skipped).
#   PHASE=1 (default): CE and every weakening location, selection seeds 0-2, step-100.
#   PHASE=2: the phase-2 cells (CE reused from phase 1) on PROFILES (default "step100 exp100"); SEEDS="0 1 2"
#            (selection, the default) or SEEDS="3 4 5 6 7" (the confirmation: every cell of a seed before the next).
#            The step-100 confirmation comes before exp-100 (issue 22's order), and runs were queued family by family,
#            cheapest first, each family's selection then its confirmation:
#              for f in mobilenetv3 regnet vit convnext; do
#                PHASE=2 PROFILES=step100 FAMILIES=$f bash benchmarks/families.sh
#                PHASE=2 PROFILES=step100 FAMILIES=$f SEEDS="3 4 5 6 7" bash benchmarks/families.sh; done
# Run it from a worktree at the spec's commit (phase 1: bd78e38; phase 2: the commit that froze the family's
# phase 2), with a venv of phase 1's pins (timm 1.0.30, as every run so far), and point RESULTS at main's file, e.g.
#   git worktree add /work/suite-families <commit> && cd /work/suite-families
#   python3 -m venv /work/venv-suite && /work/venv-suite/bin/pip install -r <(git show bd78e38:requirements.txt) -e .
#   PYTHONPATH=$PWD PYTHON=/work/venv-suite/bin/python RESULTS=/work/main/benchmarks/results/families_e40.jsonl \
#       HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 nohup bash benchmarks/families.sh &
# (FAMILIES="vit regnet" runs only those; JOBS sets the runs in parallel, one thread each on 2 cores. SPEC and
# SUITE_VARS, the spec's --var NAME=VALUE pairs, let benchmarks/finetune.sh run its spec's phases through this.)
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC=${SPEC:-benchmarks/configs/families_e40.yaml}
RESULTS=${RESULTS:-benchmarks/results/families_e40.jsonl}
PYTHON=${PYTHON:-python}
SEEDS=${SEEDS:-0 1 2}
spec_vars=()
# shellcheck disable=SC2206
[ -z "${SUITE_VARS:-}" ] || spec_vars=(--var ${SUITE_VARS})
suite() { "$PYTHON" benchmarks/accuracy_suite.py --spec "$SPEC" "${spec_vars[@]}" --results "$RESULTS" \
    --jobs "${JOBS:-2}" "$@"; }
for family in ${FAMILIES:-convnext vit mobilenetv3 regnet}; do
    if [ "${PHASE:-1}" = 1 ]; then
        suite --suite main --only ce --profiles "step100_$family" --seeds 0 1 2
        suite --suite ablations --profiles "step100_$family" --seeds 0 1 2
    else
        by_seed=()
        [ "$SEEDS" = "0 1 2" ] || by_seed=(--by_seed)
        # shellcheck disable=SC2086
        profiles=()
        for kind in ${PROFILES:-step100 exp100}; do profiles+=("${kind}_$family"); done
        suite --suite main --profiles "${profiles[@]}" --seeds $SEEDS "${by_seed[@]}"
    fi
done
