#!/usr/bin/env bash
# The GPU run of docs/RESULTS.md: the CIFAR-style protocol (ResNet-32, LDAM-DRW's schedule at half length,
# 100 epochs) on Fashion-MNIST-LT step-100, every cell of benchmarks/configs/fmnist_lt_gpu_r32_e100.yaml (3 seeds
# each) at once on one GPU, one CPU thread per run; about 3 minutes on an H200.
#
#   bash benchmarks/gpu_protocol.sh [RESULTS_JSONL]
#   SPEC=benchmarks/configs/fmnist_lt_gpu_r32_e200.yaml JOBS=9 bash benchmarks/gpu_protocol.sh   # full 200 epochs
#
# Needs the requirements (or WHEELS=<dir of wheels> to add to an image that already has torch) and the
# Fashion-MNIST IDX files ($FASHION_MNIST_DIR or Debian's dataset-fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC=${SPEC:-benchmarks/configs/fmnist_lt_gpu_r32_e100.yaml}
RESULTS=${1:-benchmarks/results/$(basename "$SPEC" .yaml).jsonl}
RUNS_DIR=${RUNS_DIR:-/tmp/procrustean_gpu_runs}
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no GPU: the runs use the CPU"
python3 -c "import pyarrow, torch, timm, transformers, datasets, accelerate; print('pyarrow', pyarrow.__version__); print('torch', torch.__version__, 'timm', timm.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__, 'accelerate', accelerate.__version__, 'cuda', torch.cuda.is_available())"
python3 -c "from procrustean.data.fashion_mnist import load_fashion_mnist; print(load_fashion_mnist())"  # build the cache once
python3 benchmarks/accuracy_suite.py --spec "$SPEC" --suite main \
  --jobs "${JOBS:-6}" --threads 1 --results "$RESULTS" --runs_dir "$RUNS_DIR"
