"""Evaluation on the held-out split with the long-tail metrics, across processes."""
from __future__ import annotations

from typing import Any, Dict

import torch


@torch.no_grad()
def evaluate_model(model: Any, loader: Any, accelerator: Any, train_class_counts: Any) -> Dict[str, Any]:
    """Long-tail metrics on the held-out split; ``gather_for_metrics`` drops the padding duplicates."""
    from ..metrics import compute_long_tail_accuracy

    model.eval()
    predictions, references = [], []
    for batch in loader:
        logits = model(batch["pixel_values"]).logits
        preds, refs = accelerator.gather_for_metrics((logits.argmax(dim=-1), batch["labels"]))
        predictions.append(preds.cpu())
        references.append(refs.cpu())
    model.train()
    counts = [int(c) for c in torch.as_tensor(train_class_counts).tolist()]
    results = compute_long_tail_accuracy(predictions=torch.cat(predictions).tolist(),
                                         references=torch.cat(references).tolist(),
                                         train_class_counts=counts, num_classes=len(counts))
    results["num_samples"] = int(sum(len(p) for p in predictions))
    return results
