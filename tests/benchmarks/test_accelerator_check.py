"""The one-command accelerator check, in its --quick mode on CPU."""

import json
import os
import subprocess
import sys

from tests import ROOT


def test_quick_accelerator_check_writes_every_field(tmp_path):
    # Compiling is its cost; the quick mode checks the path, not the speed.
    env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    proc = subprocess.run([sys.executable, "benchmarks/accelerator_check.py", str(tmp_path),
                           "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.load(open(tmp_path / "accelerator_check.json"))
    assert set(result) == {"device", "resnet18_steps", "ntk", "cifar10_noise", "yinyang"}
    assert not [k for k, v in result.items() if "error" in v], result
    device = result["device"]
    assert device["backend"] == "cpu" and device["quick"] and device["jax"] and device["jaxlib"]
    steps = result["resnet18_steps"]
    regimes = {"standard", "alpha_cached", "alpha_uncached", "linearized"}
    assert set(steps["images_per_s"]) == set(steps["ratio_to_standard"]) == regimes
    assert steps["ratio_to_standard"]["standard"] == 1.0
    assert all(v > 0 for v in steps["images_per_s"].values())
    assert result["ntk"]["shape"] == [2, 10, 2, 10] and result["ntk"]["seconds"] > 0
    cifar = result["cifar10_noise"]
    assert cifar["returncode"] == 0 and cifar["records"] > 0 and cifar["checkpoints"] == 8
    lines = open(os.path.join(cifar["workdir"], "metrics.jsonl")).read().splitlines()
    assert len(lines) == cifar["records"]
    assert result["yinyang"]["returncode"] == 0 and result["yinyang"]["seconds"] > 0
