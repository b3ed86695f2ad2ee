"""Crash safety: a training process killed with SIGKILL at random moments resumes exactly.

A subprocess fits the tiny preset with a checkpoint every two steps; the test
kills it at seeded random moments (during stages 1-2, between the stage file and
the first checkpoint, and repeatedly while the GAN trains), resumes it each time
in a fresh process, and compares the end result with an uninterrupted run.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conchshell import presets
from conchshell.datasets import make_toy_dataset
from conchshell.io import load_tree

pytestmark = pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning")
SCRIPT = Path(__file__).parent / "scripts" / "reliability_fit.py"
MAX_STEPS = 40
EVERY = 2


def _start(out: Path, resume: bool) -> subprocess.Popen:
    args = [sys.executable, str(SCRIPT), str(out), str(MAX_STEPS), str(EVERY)]
    if resume:
        args.append("--resume")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _steps_on_disk(ckpt: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in ckpt.glob("step-*.safetensors"))


def _wait_for(proc: subprocess.Popen, condition, timeout: float = 120.0) -> bool:
    """Poll every few milliseconds until ``condition()`` or the process ends."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if condition():
            return True
        time.sleep(0.005)
    raise TimeoutError("training subprocess made no progress")


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the process; True when it was still running (a real interruption)."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted_run(tmp_path):
    rng = random.Random(20261125)
    ref = tmp_path / "reference"
    _finish(_start(ref, resume=False))

    out = tmp_path / "killed"
    ckpt = out / "ckpt"
    stages = ckpt / "stages.safetensors"
    kills: list[str] = []

    # 1. During stages 1-2: fit has created the checkpoint folder, the stage file is not there.
    proc = _start(out, resume=False)
    assert _wait_for(proc, ckpt.exists)
    time.sleep(rng.uniform(0.0, 0.5))
    stage = "stages 1-2" if not stages.exists() else "after the stage file"
    if _kill(proc):
        kills.append(stage)

    # 2. Right after the stage file appears, before or during the first checkpoint.
    proc = _start(out, resume=True)
    if _wait_for(proc, stages.exists):
        time.sleep(rng.uniform(0.0, 0.05))
        if _kill(proc):
            kills.append(f"stage file written, checkpoints {_steps_on_disk(ckpt)}")

    # 3. Repeatedly while the GAN trains: wait for a new checkpoint, then a random delay.
    while len(kills) < 7:
        proc = _start(out, resume=True)
        seen = max(_steps_on_disk(ckpt), default=0)
        target = min(seen + rng.choice([2, 4, 6]), MAX_STEPS - EVERY)
        if seen >= MAX_STEPS - EVERY:
            break
        if _wait_for(proc, lambda t=target: max(_steps_on_disk(ckpt), default=0) >= t):
            time.sleep(rng.uniform(0.0, 0.1))
            if _kill(proc):
                kills.append(f"training, checkpoints {_steps_on_disk(ckpt)}")
                continue
        _finish(proc)  # it ended on its own: nothing left to interrupt
        break
    # Every checkpoint left behind by a killed process is complete and readable.
    for path in ckpt.glob("step-*.safetensors"):
        assert load_tree(path)["step"] == int(path.stem.split("-")[1])

    if proc.poll() is None or not (out / "final.safetensors").exists():
        _finish(_start(out, resume=True))
    assert len(kills) >= 5, kills
    print(f"{len(kills)} kills: {kills}")  # shown with pytest -s

    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(1, MAX_STEPS + 1))
    reference_history = json.loads((ref / "history.json").read_text())
    for a, b in zip(history, reference_history, strict=True):
        a = {k: v for k, v in a.items() if k != "seconds"}
        b = {k: v for k, v in b.items() if k != "seconds"}
        assert a == b
    final, expected = load_file(out / "final.safetensors"), load_file(ref / "final.safetensors")
    assert final.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(final[key], tensor), key
    # No temporary file from an interrupted write is left in the checkpoint folder.
    assert sorted(p.name for p in ckpt.iterdir() if p.name.endswith(".tmp")) == []


def test_resume_clears_a_temporary_file_left_by_a_killed_write(tmp_path):
    # What a SIGKILL during save_tree leaves: a hidden, partial temporary file.
    toy = make_toy_dataset(n_per_category=1, n_samples=16000, random_state=0)

    def tiny(steps):
        return presets.conchshell(
            "tiny",
            level="high",
            random_state=0,
            verbose=0,
            max_steps=steps,
            checkpoint_dir=tmp_path,
        )

    tiny(2).fit(toy)
    whole = (tmp_path / "step-000000002.safetensors").read_bytes()
    partial = tmp_path / ".step-000000003.safetensors.k1ll3d.tmp"
    partial.write_bytes(whole[: len(whole) // 2])
    resumed = tiny(3).fit(toy, resume=True)
    assert [h["step"] for h in resumed.history_] == [1, 2, 3]
    assert not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
