#!/usr/bin/env bash
# The family panel's phase 1 (benchmarks/configs/families_e40.yaml): CE and every weakening location, family by
# family, selection seeds 0-2, step-100. Resumable (finished runs are skipped). Run it from a worktree at the spec's
# commit, with a venv of that commit's pins, and point RESULTS at main's results file, e.g.
#   git worktree add /work/suite-families <commit> && cd /work/suite-families
#   python3 -m venv /work/venv-suite && /work/venv-suite/bin/pip install -r requirements.txt -e .
#   PYTHONPATH=$PWD PYTHON=/work/venv-suite/bin/python RESULTS=/work/main/benchmarks/results/families_e40.jsonl \
#       HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 nohup bash benchmarks/families.sh &
# (FAMILIES="vit regnet" runs only those; JOBS sets the runs in parallel, one thread each on 2 cores.)
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
