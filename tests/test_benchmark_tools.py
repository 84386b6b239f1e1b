"""The tools the throughput benchmark stands on: the step clock times any loop from outside, and stops it."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_step_clock_stamps_every_optimizer_step_and_ends_the_script(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(
        "import torch\n"
        "w = torch.nn.Parameter(torch.zeros(3))\n"
        "opt = torch.optim.SGD([w], lr=0.1)\n"
        "for _ in range(100):\n"
        "    w.sum().backward(); opt.step(); opt.zero_grad()\n"
        "print('never reached')\n")
    stamps, profile = tmp_path / "stamps.json", tmp_path / "loop.prof"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_clock.py"), str(stamps), "7",
                           "--profile", str(profile), str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    times = json.loads(stamps.read_text())
    assert len(times) == 7 and times == sorted(times) and "never reached" not in proc.stdout
    assert profile.stat().st_size > 0


def test_step_clock_says_when_the_script_ends_too_early(tmp_path):
    script = tmp_path / "short.py"
    script.write_text("import torch\nw = torch.nn.Parameter(torch.zeros(1))\ntorch.optim.SGD([w], lr=1).step()\n")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_clock.py"), str(tmp_path / "s.json"), "5",
                           str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "ended after 1 optimizer steps, before the 5" in proc.stderr
