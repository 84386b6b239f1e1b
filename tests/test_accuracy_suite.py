"""The accuracy suite's planning: which runs, with which options, keyed how (no training here)."""
import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("accuracy_suite", ROOT / "benchmarks" / "accuracy_suite.py")
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)

SPEC = {
    "base": {"epochs": 4, "lr_decay_epochs": [2, 3], "checkpointing_steps": "no"},
    "profiles": {"step100": {"config": "a.yaml", "imbalance": "step:100"},
                 "exp100": {"config": "b.yaml", "imbalance": "exp:100"}},
    "diagnostics": {"eval_train_accuracy": True},
    "diagnose_profiles": ["step100"],
    "main": {"ce": {"overrides": {"weakening": False}, "diagnose": True},
             "weakening": {"overrides": {"weakening": True, "weakening_location": "stage:1"}}},
    "ablations": {"gamma_2": {"overrides": {"weakening_gamma": 2.0}}},
    "ablation_base": {"weakening": True, "weakening_location": "stage:1"},
    "ablation_profiles": ["step100"],
}


def test_main_plan_keys_and_diagnostics_only_where_asked():
    args = suite.parse_args(["--suite", "main", "--seeds", "0", "1", "--runs_dir", "/tmp/r"])
    runs = suite.plan(args, SPEC)
    assert len(runs) == 2 * 2 * 2
    by_key = {r["key"]: r for r in runs}
    ce_step, ce_exp = by_key["main/ce/step100/seed1"], by_key["main/ce/exp100/seed1"]
    assert ce_step["diagnose"] and ce_step["options"]["eval_train_accuracy"] is True
    assert not ce_exp["diagnose"] and "eval_train_accuracy" not in ce_exp["options"]
    assert ce_exp["options"]["imbalance"] == "exp:100" and ce_exp["config"] == "b.yaml"
    assert ce_step["options"]["seed"] == 1 and ce_step["options"]["output_dir"] == "/tmp/r/main/ce/step100/seed1"


def test_ablation_plan_applies_the_base_then_the_cell():
    args = suite.parse_args(["--suite", "ablations", "--seeds", "0", "--only", "gamma_2"])
    (run,) = suite.plan(args, SPEC)
    assert run["key"] == "ablations/gamma_2/step100/seed0"
    options = run["options"]
    assert options["weakening_location"] == "stage:1" and options["weakening_gamma"] == 2.0
    cmd = suite.command_of(run)
    assert cmd[1:3] == ["recipes/train.py", "--config"]
    joined = " ".join(cmd)
    assert "--weakening true" in joined and "--lr_decay_epochs 2 3" in joined and "--checkpointing_steps no" in joined


def test_profiles_carry_options_and_by_seed_orders_paired_seeds_first():
    spec = {**SPEC, "profiles": {**SPEC["profiles"],
                                 "step100_order_b": {"config": "a.yaml", "imbalance": "step:100",
                                                     "imbalance_class_order": [1, 0, 2]}}}
    args = suite.parse_args(["--suite", "main", "--seeds", "3", "4", "--profiles", "step100_order_b", "--by_seed"])
    runs = suite.plan(args, spec)
    assert [(r["seed"], r["cell"]) for r in runs] == [(3, c) for c in SPEC["main"]] + [(4, c) for c in SPEC["main"]]
    assert "--imbalance_class_order 1 0 2" in " ".join(suite.command_of(runs[0]))
    assert "config" not in runs[0]["options"]


@pytest.mark.parametrize("spec_file", sorted(p.name for p in (ROOT / "benchmarks" / "configs").glob("*.yaml")))
def test_every_shipped_spec_plans_commands_the_recipe_accepts(spec_file, monkeypatch):
    """A spec prepared for a machine we do not have (the GPU ones) must not fail on its first command there."""
    from procrustean.train.config import parse_config

    monkeypatch.chdir(ROOT)
    spec = yaml.safe_load((ROOT / "benchmarks" / "configs" / spec_file).read_text())
    for name in ("main", "ablations"):
        args = suite.parse_args(["--suite", name, "--spec", f"benchmarks/configs/{spec_file}", "--seeds", "0",
                                 "--var", "sources=/sources", "target=/target"])  # the fine-tuning suite's inputs
        for run in suite.plan(args, spec):
            config = parse_config(suite.command_of(run)[2:])
            assert config.seed == 0


def test_families_cells_limited_to_profiles_and_placeholders():
    spec = {**SPEC,
            "base": {**SPEC["base"], "dataset": "${target}"},
            "families": {"vit": {"model": "local-dir:${sources}/vit/export", "optimizer": "adamw"}},
            "profiles": {"step100_vit": {"config": "a.yaml", "imbalance": "step:100", "family": "vit", "lr": 0.5},
                         "step100": SPEC["profiles"]["step100"]},
            "ablations": {"gamma_2": SPEC["ablations"]["gamma_2"],
                          "stage4": {"overrides": {"weakening_location": "stage:4"}, "profiles": ["step100"]}},
            "ablation_profiles": ["step100", "step100_vit"]}
    args = suite.parse_args(["--suite", "ablations", "--seeds", "0", "--var", "sources=/s", "target=/t"])
    runs = {r["key"]: r["options"] for r in suite.plan(args, spec)}
    assert sorted(runs) == ["ablations/gamma_2/step100/seed0", "ablations/gamma_2/step100_vit/seed0",
                            "ablations/stage4/step100/seed0"]
    vit = runs["ablations/gamma_2/step100_vit/seed0"]
    assert vit["model"] == "local-dir:/s/vit/export" and vit["dataset"] == "/t"
    assert vit["optimizer"] == "adamw" and vit["lr"] == 0.5 and "family" not in vit
    with pytest.raises(SystemExit, match="needs --var"):
        suite.plan(suite.parse_args(["--suite", "ablations", "--seeds", "0"]), spec)
    with pytest.raises(SystemExit):
        suite.parse_args(["--var", "no_equals_sign"])
