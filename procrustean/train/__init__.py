"""The training machinery the recipes use (``recipes/train.py``); not needed to use the method itself.

``config`` (the one ``TrainConfig``), ``setup`` (model, loss, optimiser and schedule from it),
``checkpoints`` (run directory, atomic checkpoints, resume), ``state`` (what a checkpoint carries),
``distributed`` (what must agree across processes), ``loaders`` (DataLoader settings), ``memory`` (host memory reuse), ``evaluation``, ``metrics_log`` (per-epoch files and
trackers), ``diagnostics`` (feature-gradient norms), ``plots`` and ``outputs`` (what a finished run writes).
"""
