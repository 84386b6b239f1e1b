"""torch.compile(ProcrusteanModel): no graph break caused by the weakening, compiled training == eager training within
a stated tolerance, a bounded number of compilations, exact resume with compile on (CPU, inductor)."""
import copy
import warnings
from collections import Counter

import pytest
import timm
import torch
import torch._dynamo as dynamo

import procrustean  # noqa: F401  (registers the CIFAR ResNets)
from procrustean import LDAMLoss, ProcrusteanModel, WeakeningPolicy
from procrustean.losses import DeferredReweighting
from procrustean.policy import batch_generator

COUNTS = [400, 200, 40, 4]
FAMILIES = ["test_resnet", "test_convnext", "test_vit"]
# the long-regime winner's shape: progress rule + LDAM-DRW, weakening stopped where DRW starts; a last, smaller batch
# in each epoch; epoch 1 has DRW on and the weakening off
EPOCHS = [[8, 8, 8, 6], [8, 8, 8, 6]]
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-5  # compiled vs eager after 8 SGD steps (float32; measured: 1.2e-6 at most)


def make(name, rule="progress", location="stage:1"):
    policy = WeakeningPolicy(COUNTS, rule=rule, gamma=0.5, progress_interval=2, seed=0)
    torch.manual_seed(0)
    kwargs = dict(num_classes=4, img_size=32) if name.startswith("test_vit") else dict(num_classes=4)
    return ProcrusteanModel(timm.create_model(name, **kwargs), policy, location=location).train()


def batch(size, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 4, (size,), generator=g)
    return x, y


def draws_for(model, x, y):
    return model.policy.draw(y, generator=batch_generator(0, y, x))  # as ProcrusteanCollator(policy) draws them


@pytest.mark.parametrize("family", FAMILIES)
def test_no_graph_break_at_any_location(family):
    model = make(family)
    x, y = batch(8, 0)
    draws = draws_for(model, x, y)
    for location in model.supported_locations[:-1]:  # input, every stage, pre_logits
        model.location = location
        dynamo.reset()
        explained = dynamo.explain(lambda x, y, d: model(x, labels=y, weakening_draws=d).loss)(x, y, draws)
        assert explained.graph_break_count == 0, (location, [b.reason for b in explained.break_reasons])
        assert explained.graph_count == 1


def long_regime_model():
    """resnet8_cifar with a normalised head and LDAM, as recipes/configs/cifar10_lt_step100.yaml."""
    policy = WeakeningPolicy(COUNTS, rule="progress", progress_interval=2, seed=0)
    torch.manual_seed(0)
    backbone = timm.create_model("resnet8_cifar", num_classes=4, normed_head=True)
    model = ProcrusteanModel(backbone, policy, loss=LDAMLoss(COUNTS)).train()
    return model, torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)


def train(model, optimizer, forward, epochs, first_step=0):
    """The recipe's schedule: DRW from epoch 1, weakening stopped at epoch 1. Returns the losses."""
    drw, losses, step = DeferredReweighting(COUNTS, start_epoch=1), [], 0
    for epoch, sizes in enumerate(EPOCHS[:epochs]):
        model.weakening_enabled = epoch < 1
        drw.apply(model.loss, epoch)
        for size in sizes:
            if step >= first_step:
                x, y = batch(size, step)
                loss = forward(x, labels=y, weakening_draws=draws_for(model, x, y)).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                losses.append(loss.item())
            step += 1
    return losses


@pytest.fixture(scope="module")
def runs():
    """Eager and compiled training of the same model on the same batches (one inductor compilation per shape and
    state, shared by the tests below)."""
    from torch._inductor.compile_fx import compile_fx

    compilations = []

    def counting_inductor(graph, inputs):
        compilations.append(len(graph.graph.nodes))
        return compile_fx(graph, inputs)

    eager, eager_opt = long_regime_model()
    eager_losses = train(eager, eager_opt, eager, 2)
    dynamo.reset()
    compiled, compiled_opt = long_regime_model()
    compiled_losses = train(compiled, compiled_opt, torch.compile(compiled, backend=counting_inductor), 2)
    return dict(eager=eager, eager_losses=eager_losses, compiled=compiled, compiled_losses=compiled_losses,
                compiled_opt=compiled_opt, compilations=len(compilations), backend=counting_inductor)


def test_compiled_training_matches_eager(runs):
    torch.testing.assert_close(runs["compiled_losses"], runs["eager_losses"], rtol=LOSS_RTOL, atol=0)
    eager, compiled = runs["eager"].state_dict(), runs["compiled"].state_dict()
    assert eager.keys() == compiled.keys()
    for key in eager:
        if eager[key].is_floating_point():
            torch.testing.assert_close(compiled[key], eager[key], rtol=0, atol=WEIGHT_ATOL, msg=key)
        else:
            assert torch.equal(compiled[key], eager[key]), key
    # the progress rule refreshed on the device under compile as the eager rule did on the host
    assert int(runs["compiled"].progress.batches) == int(runs["eager"].progress.batches) == 4


def test_compilations_are_bounded(runs):
    # 8 steps: the first graph, the batch size made dynamic by the last batch, DRW's weight (None -> tensor) with the
    # weakening off at epoch 1; never one per step, whatever the number of weakened samples
    assert runs["compilations"] <= 4, runs["compilations"]


def test_exact_resume_with_compile_on(runs, tmp_path):
    from safetensors.torch import load_file, save_file

    dynamo.reset()
    first, first_opt = long_regime_model()
    compiled = torch.compile(first, backend=runs["backend"])
    train(first, first_opt, compiled, 1)  # stopped after epoch 0 (mid-run: the progress window is not empty)
    save_file(first.state_dict(), tmp_path / "model.safetensors")
    torch.save(first_opt.state_dict(), tmp_path / "optimizer.pt")

    resumed, resumed_opt = long_regime_model()
    resumed.load_state_dict(load_file(tmp_path / "model.safetensors"))
    resumed_opt.load_state_dict(torch.load(tmp_path / "optimizer.pt", weights_only=True))
    train(resumed, resumed_opt, torch.compile(resumed, backend=runs["backend"]), 2, first_step=len(EPOCHS[0]))
    full, after = runs["compiled"].state_dict(), resumed.state_dict()
    for key in full:
        assert torch.equal(full[key], after[key]), key


def test_generator_draws_under_compile_warn_once_and_train():
    model = make("test_resnet")
    compiled = torch.compile(model, backend="aot_eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in range(3):
            x, y = batch(8, seed)
            compiled(x, labels=y).loss.backward()
    said = [w for w in caught if "weakening_draws" in str(w.message)]
    assert len(said) == 1 and "ProcrusteanCollator(policy)" in str(said[0].message)
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)


def test_compiled_eval_is_the_plain_backbone():
    model = make("test_resnet").eval()
    x, y = batch(8, 0)
    with torch.no_grad():
        assert torch.allclose(torch.compile(copy.deepcopy(model), backend="aot_eager")(x, labels=y).logits,
                              model.backbone(x), atol=1e-5)


def test_random_location_is_one_graph_with_eager_values():
    """``random`` draws its location per batch: traced, every location mixes and keeps it where drawn (a Python
    choice would compile a graph per location and recompile on revisits)."""
    compilations = []

    def counting(graph, inputs):
        compilations.append(1)
        return graph.forward

    losses = {}
    for mode in ("eager", "compiled"):
        model = make("resnet8_cifar", rule="power", location="random")
        forward = torch.compile(model, backend=counting) if mode == "compiled" else model
        losses[mode], drawn = [], set()
        for step in range(10):
            x, y = batch(8, step)
            draws = draws_for(model, x, y)
            drawn.add(min(int(draws.location * 6), 5))
            loss = forward(x, labels=y, weakening_draws=draws).loss
            loss.backward()
            losses[mode].append(loss.item())
    assert len(drawn) >= 4  # the batches drew several locations
    torch.testing.assert_close(losses["compiled"], losses["eager"], rtol=1e-6, atol=0)
    assert len(compilations) <= 2  # the draw's value specialised once, then symbolic


def test_compiled_weakening_saves_what_the_unweakened_graph_saves():
    """The tensors the compiled training graph keeps for its backward: weakened at a stage that ends in a ReLU, no
    bool mask of the stage's map (inductor's CPU code stores and loads those slowly; the ReLU's mask is recomputed
    from the features the mix's backward keeps, as in the unweakened graph)."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    dynamo.reset()  # no batch sizes remembered from the tests before (a dynamic batch changes what is saved)
    model = make("resnet8_cifar", rule="power", location="stage:1")
    compiled = torch.compile(model)
    x, y = batch(128, 0)  # the partitioner weighs sizes: at batch 8 it saved the float map either way
    draws = draws_for(model, x, y)
    masks = {}
    for weakened in (False, True):
        model.weakening_enabled = weakened
        saved = []

        def pack(tensor):
            saved.append((tensor.dtype, tuple(tensor.shape)))
            return tensor

        # no cached partition: the caches' keys do not cover a custom operator's autograd formula
        with functorch_config.patch(enable_autograd_cache=False), inductor_config.patch(fx_graph_cache=False), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            compiled(x, labels=y, weakening_draws=draws).loss.backward()
        masks[weakened] = sorted(shape for dtype, shape in saved if dtype == torch.bool and len(shape) == 4)
    # e.g. the last stage's, before the pooling, may be saved in both graphs
    assert not Counter(masks[True]) - Counter(masks[False]), masks
