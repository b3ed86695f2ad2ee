"""Run under torchrun: one rank alone sees a non-finite generator loss at its second step.

Every rank must skip that update together (a rank that skipped its backward
while the others waited in the gradient all-reduce would hang them), so the
ranks end with identical weights and identical ``skipped_g`` records.
Each rank saves its generator weights and history (the test's own doing).
"""

import json
import os
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from conchshell import presets
from conchshell.datasets import make_toy_dataset
from conchshell.gan.losses import ConchShellLoss

warnings.simplefilter("ignore")
torch.set_num_threads(1)
out = Path(sys.argv[1])
rank = int(os.environ.get("RANK", "0"))
original = ConchShellLoss.generator
calls = []


def faulty(self, *args, **kwargs):
    terms = original(self, *args, **kwargs)
    calls.append(1)
    if rank == 1 and len(calls) == 2:
        terms["total"] = terms["total"] * float("nan")
    return terms


ConchShellLoss.generator = faulty
dataset = make_toy_dataset(n_per_category=1, n_categories=6, n_samples=16000, random_state=0)
model = presets.conchshell("tiny", level="high", random_state=0, verbose=0, max_steps=3)
model.fit(dataset)
state = {k: v.contiguous() for k, v in model.generator_.module_.state_dict().items()}
save_file(state, str(out / f"generator-rank{rank}.safetensors"))
(out / f"history-rank{rank}.json").write_text(json.dumps(model.history_))
