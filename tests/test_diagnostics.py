import timm
import torch
import torch.nn.functional as F

import procrustean  # noqa: F401
from procrustean.train.diagnostics import FeatureGradientMonitor


def test_feature_gradient_norms_equal_per_sample_gradients():
    torch.manual_seed(0)
    backbone = timm.create_model("resnet8_cifar", num_classes=3)
    monitor = FeatureGradientMonitor(backbone, 3)
    x, y = torch.randn(6, 3, 16, 16), torch.tensor([0, 0, 1, 2, 2, 2])
    F.cross_entropy(backbone(x), y).backward()
    monitor.update(y, loss_scale=len(y))
    # reference: gradient of each sample's own loss w.r.t. its pre-logit feature
    with torch.no_grad():
        feats = backbone.forward_head(backbone.forward_features(x), pre_logits=True)
    feats.requires_grad_(True)
    per_sample = F.cross_entropy(backbone.get_classifier()(feats), y, reduction="none")
    (grad,) = torch.autograd.grad(per_sample.sum(), feats)
    norms = grad.norm(dim=1)
    expected = [norms[y == c].mean().item() for c in range(3)]
    got = monitor.compute()
    assert all(abs(a - b) < 1e-4 * max(1.0, b) for a, b in zip(got, expected)), (got, expected)
    state = monitor.state_dict()
    monitor.reset()
    assert monitor.compute() == [None, None, None]
    monitor.load_state_dict(state)
    assert monitor.compute() == got
    monitor.remove()
