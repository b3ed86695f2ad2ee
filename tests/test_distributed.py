"""Two CPU processes under torchrun (gloo) train to identical weights."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "scripts" / "ddp_fit.py"


@pytest.mark.slow
def test_two_process_ddp_fit_ends_with_identical_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=0",
            "--rdzv_backend=c10d",
            "--rdzv_endpoint=127.0.0.1:0",
            str(SCRIPT),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = load_file(tmp_path / "generator-rank0.safetensors")
    rank1 = load_file(tmp_path / "generator-rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # only rank 0 wrote checkpoints: one set, no duplicates from rank 1
    steps = sorted(p.name for p in (tmp_path / "ckpt").glob("step-*.safetensors"))
    assert steps == ["step-000000002.safetensors", "step-000000003.safetensors"]
