"""Run under torchrun: fit the tiny preset, then each rank saves its generator weights.

The library itself writes files only on rank 0; saving per rank here is the
test's own doing, to compare the ranks' weights.
"""

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
dataset = make_toy_dataset(n_per_category=1, n_categories=6, n_samples=16000, random_state=0)
model = presets.conchshell(
    "tiny", level="high", random_state=0, verbose=0, max_steps=3, checkpoint_dir=out / "ckpt"
)
model.fit(dataset)
rank = (
    torch.distributed.get_rank()
    if torch.distributed.is_initialized()
    else int(__import__("os").environ.get("RANK", "0"))
)
state = {k: v.contiguous() for k, v in model.generator_.module_.state_dict().items()}
save_file(state, str(out / f"generator-rank{rank}.safetensors"))
