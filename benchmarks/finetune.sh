#!/usr/bin/env bash
# The fine-tuning suite (benchmarks/configs/finetune_digits.yaml), family by family, the whole chain: the target, each
# family's source, then the fine-tuning runs. Resumable at every step (a prepared target and a finished source are
# kept, an interrupted source goes on from its last epoch, finished runs are skipped).
#   TARGET (default data/digits): made by benchmarks/prepare_digits.py from DIGITS_PNG if it is not there yet
#          (DIGITS_PNG: OpenCV's digits.png, from Debian's opencv-doc; prepare_digits.py's docstring says how).
#   SOURCES (default sources): SOURCES/<family> made by benchmarks/pretrain_source.py if it is not finished.
#   PHASE=1 (default): CE and every weakening location, selection seeds 0-2, step-100.
#   PHASE=2: the phase-2 cells on PROFILES (default "step100"); SEEDS="0 1 2" (selection, the default) or
#            SEEDS="3 4 5 6 7" (the confirmation: every cell of a seed before the next).
# Run it from a worktree at the spec's commit, with RESULTS pointing at main's file, e.g.
#   git worktree add /work/suite-ft <commit> && cd /work/suite-ft
#   PYTHONPATH=$PWD PYTHON=/work/main/.venv/bin/python RESULTS=/work/main/benchmarks/results/finetune_digits.jsonl \
#       SOURCES=/work/ft/sources TARGET=/work/ft/digits DIGITS_PNG=.../digits.png \
#       HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 FAMILIES=mobilenetv3 nohup bash benchmarks/finetune.sh &
# (FAMILIES: default "mobilenetv3 convnext regnet vit resnet32", cheapest source first; JOBS: runs in parallel,
# one thread each on 2 cores.) The phases run through benchmarks/families.sh with this spec (paths without spaces).
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-benchmarks/results/finetune_digits.jsonl}
PYTHON=${PYTHON:-python}
SOURCES=${SOURCES:-sources}
TARGET=${TARGET:-data/digits}
SEEDS=${SEEDS:-0 1 2}
if [ ! -f "$TARGET/dataset_dict.json" ]; then
    "$PYTHON" benchmarks/prepare_digits.py --digits_png "${DIGITS_PNG:?set DIGITS_PNG to the path of OpenCV digits.png (see benchmarks/prepare_digits.py)}" \
        --output_dir "$TARGET"
fi
for family in ${FAMILIES:-mobilenetv3 convnext regnet vit resnet32}; do
    OMP_NUM_THREADS=${SOURCE_THREADS:-2} "$PYTHON" benchmarks/pretrain_source.py --family "$family" \
        --output_dir "$SOURCES/$family"
    SPEC=benchmarks/configs/finetune_digits.yaml RESULTS=$RESULTS PYTHON=$PYTHON SEEDS=$SEEDS \
        PROFILES=${PROFILES:-step100} SUITE_VARS="sources=$SOURCES target=$TARGET" FAMILIES=$family \
        bash benchmarks/families.sh
done
