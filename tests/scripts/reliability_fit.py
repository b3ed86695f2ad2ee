"""Fit the tiny preset (optionally resuming) and save the final GAN weights and history.

Used by tests/test_reliability_checkpoints.py, which kills this process with
SIGKILL at random moments and runs it again with ``--resume`` until it ends.

Usage: reliability_fit.py OUT_DIR MAX_STEPS CHECKPOINT_EVERY [--resume]
"""

import json
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from conchshell import presets
from conchshell.datasets import make_toy_dataset

warnings.simplefilter("ignore")
torch.set_num_threads(1)
out = Path(sys.argv[1])
max_steps, every = int(sys.argv[2]), int(sys.argv[3])
resume = "--resume" in sys.argv[4:]
dataset = make_toy_dataset(n_per_category=1, n_samples=16000, random_state=0)
model = presets.conchshell(
    "tiny",
    level="high",
    random_state=0,
    verbose=0,
    max_steps=max_steps,
    checkpoint_every=every,
    checkpoint_dir=out / "ckpt",
)
model.fit(dataset, resume=resume)
weights = {
    f"{name}.{key}": value.detach().contiguous().clone()
    for name in ("generator", "discriminator")
    for key, value in getattr(model, f"{name}_").module_.state_dict().items()
}
save_file(weights, str(out / "final.safetensors"))
(out / "history.json").write_text(json.dumps(model.history_))
