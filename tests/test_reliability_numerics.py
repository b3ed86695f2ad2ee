"""Numerical faults in GAN training: a NaN/Inf loss, gradient or batch is skipped and logged;
repeated faults roll training back to the last checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conchshell import presets
from conchshell.datasets import make_toy_dataset
from conchshell.gan.losses import ConchShellLoss
from conchshell.io import load_tree

pytestmark = [
    pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning"),
    pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)`:UserWarning"),
]


@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset(n_per_category=1, n_samples=16000, random_state=0)


def tiny(**params):
    return presets.conchshell("tiny", level="high", random_state=0, verbose=0, **params)


def _inject(monkeypatch, method: str, bad_calls: set[int], fault: str) -> list[int]:
    """Make ``ConchShellLoss.<method>`` faulty on the given (1-based) calls."""
    original = getattr(ConchShellLoss, method)
    calls: list[int] = []

    def faulty(self, *args, **kwargs):
        terms = original(self, *args, **kwargs)
        calls.append(len(calls) + 1)
        if len(calls) not in bad_calls:
            return terms
        if fault == "nan_loss":
            terms["total"] = terms["total"] * float("nan")
        elif fault == "inf_loss":
            terms["total"] = terms["total"] + float("inf")
        elif fault == "nan_grad":
            # Finite (zero) in value, but sqrt'(0) = inf makes every gradient non-finite.
            pred = kwargs["pred_latents"]
            terms["total"] = terms["total"] + torch.sqrt(pred.sum() - pred.sum().detach())
        return terms

    monkeypatch.setattr(ConchShellLoss, method, faulty)
    return calls


def _finite(model) -> bool:
    return all(
        bool(torch.isfinite(t).all())
        for comp in (model.generator_, model.discriminator_)
        for t in comp.module_.state_dict().values()
        if t.is_floating_point()
    )


@pytest.mark.parametrize(
    ("method", "fault", "key", "reason"),
    [
        ("generator", "nan_loss", "skipped_g", "non-finite loss"),
        ("generator", "inf_loss", "skipped_g", "non-finite loss"),
        ("generator", "nan_grad", "skipped_g", "non-finite gradient"),
        ("discriminator", "nan_loss", "skipped_d", "non-finite loss"),
    ],
)
def test_a_faulty_step_is_skipped_logged_and_training_goes_on(
    toy, monkeypatch, method, fault, key, reason
):
    clean = tiny(max_steps=4).fit(toy)
    calls = _inject(monkeypatch, method, {2}, fault)
    model = tiny(max_steps=4).fit(toy)
    assert len(calls) == 4
    assert [h["step"] for h in model.history_] == [1, 2, 3, 4]
    assert [h.get(key) for h in model.history_] == [None, reason, None, None]
    other = "skipped_d" if key == "skipped_g" else "skipped_g"
    assert all(other not in h for h in model.history_)
    assert _finite(model)
    # Step 1 is identical to the clean run; the skipped update changes what follows.
    assert model.history_[0] == {**clean.history_[0], "seconds": model.history_[0]["seconds"]}
    if key == "skipped_g":
        # The generator did not move at step 2: step 3's D loss sees the step-1 generator.
        assert model.history_[2]["d_total"] != clean.history_[2]["d_total"]


def _record_batches(monkeypatch, dataset, poison_audio_call: int | None = None) -> list[list[int]]:
    """Record the item indices of every training batch; optionally poison one batch's audio."""
    original = type(dataset).training_audio
    batches: list[list[int]] = []

    def recording(self, indices, rng):
        audio = original(self, indices, rng)
        batches.append(list(indices))
        if len(batches) == poison_audio_call:
            audio = audio.clone()
            audio[0, 100] = float("nan")
        return audio

    monkeypatch.setattr(type(dataset), "training_audio", recording)
    return batches


def test_a_nan_feature_skips_the_steps_whose_batch_holds_it(toy, monkeypatch):
    from conchshell.video.i3d import I3DExtractor

    original = I3DExtractor.transform
    seen = [0]  # items the extractor has seen so far

    def poisoned(self, video):
        features = torch.as_tensor(original(self, video)).clone()
        first, seen[0] = seen[0], seen[0] + len(features)
        if first <= 3 < seen[0]:
            features[3 - first, 0] = float("nan")  # as if the extractor overflowed on item 3
        return features

    monkeypatch.setattr(I3DExtractor, "transform", poisoned)
    batches = _record_batches(monkeypatch, toy)
    model = tiny(max_steps=6).fit(toy)
    faulty = [3 in batch for batch in batches]
    assert sum(faulty) == 2  # two epochs of three batches: item 3 comes up once in each
    for record, bad in zip(model.history_, faulty, strict=True):
        assert ("skipped_d" in record) == bad
        assert ("skipped_g" in record) == bad
    assert _finite(model)


def test_a_nan_in_a_training_clip_is_a_clear_error(toy, monkeypatch):
    # Clips are checked when loaded; one that turns NaN later (a custom dataset) stops
    # training with the codec's input check rather than feeding NaN into the GAN.
    _record_batches(monkeypatch, toy, poison_audio_call=3)
    with pytest.raises(ValueError, match="audio contains NaN or infinite values"):
        tiny(max_steps=4).fit(toy)


def test_repeated_faults_roll_back_to_the_last_checkpoint(toy, monkeypatch, tmp_path):
    # Steps 5, 6 and 7 fail; after the third the model returns to the checkpoint of step 4.
    _inject(monkeypatch, "generator", {5, 6, 7}, "nan_loss")
    with pytest.warns(RuntimeWarning, match="rolled back to the checkpoint of step 4"):
        model = tiny(max_steps=8, checkpoint_every=2, max_bad_steps=3, checkpoint_dir=tmp_path).fit(
            toy
        )
    steps = [h["step"] for h in model.history_]
    assert steps == list(range(1, 9))
    rolled = [h for h in model.history_ if "rollback" in h]
    assert len(rolled) == 1
    assert rolled[0]["step"] == 5
    assert rolled[0]["rollback"] == {"from_step": 7, "to_step": 4, "bad_steps": 3}
    assert not any("skipped_g" in h for h in model.history_)  # the faulty steps were undone
    assert _finite(model)
    # The checkpoint of step 6 was held back during the faults; the one there now was
    # written after the rollback.
    assert sorted(p.name for p in tmp_path.glob("step-*")) == [
        "step-000000006.safetensors",
        "step-000000008.safetensors",
    ]
    six = load_tree(tmp_path / "step-000000006.safetensors")
    assert [h["step"] for h in six["history"]] == [1, 2, 3, 4, 5, 6]
    assert six["history"][4]["rollback"]["from_step"] == 7


def test_repeated_faults_without_a_checkpoint_stop_with_a_clear_error(toy, monkeypatch):
    _inject(monkeypatch, "generator", {2, 3, 4}, "nan_loss")
    with pytest.raises(RuntimeError, match=r"3 consecutive steps up to step 4.*no checkpoint"):
        tiny(max_steps=6, max_bad_steps=3).fit(toy)


def test_a_fault_that_keeps_coming_back_stops_after_three_rollbacks(toy, monkeypatch, tmp_path):
    _inject(monkeypatch, "generator", set(range(3, 100)), "nan_loss")
    with (
        pytest.warns(RuntimeWarning, match="rolled back"),
        pytest.raises(RuntimeError, match="rolled back to the checkpoint of step 2 three times"),
    ):
        tiny(max_steps=20, checkpoint_every=2, max_bad_steps=2, checkpoint_dir=tmp_path).fit(toy)


def test_max_bad_steps_zero_only_skips(toy, monkeypatch):
    _inject(monkeypatch, "generator", {1, 2, 3, 4}, "nan_loss")
    model = tiny(max_steps=4, max_bad_steps=0).fit(toy)
    assert [h.get("skipped_g") for h in model.history_] == ["non-finite loss"] * 4
    assert _finite(model)


@pytest.mark.parametrize("value", [-1, 1.5, "3", True])
def test_bad_max_bad_steps_is_named(toy, value):
    with pytest.raises(
        ValueError,
        match=r"'max_bad_steps' parameter of ImageToMusic must be an int in the range \[0, inf\)",
    ):
        tiny(max_bad_steps=value).fit(toy)


@pytest.mark.slow
def test_under_ddp_a_fault_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    script = Path(__file__).parent / "scripts" / "reliability_ddp_fault.py"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=0",
            "--rdzv_backend=c10d",
            "--rdzv_endpoint=127.0.0.1:0",
            str(script),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    histories = [json.loads((tmp_path / f"history-rank{r}.json").read_text()) for r in (0, 1)]
    for history in histories:
        assert [h.get("skipped_g") for h in history] == [None, "non-finite loss", None]
    rank0 = load_file(tmp_path / "generator-rank0.safetensors")
    rank1 = load_file(tmp_path / "generator-rank1.safetensors")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
        assert bool(torch.isfinite(rank0[key]).all()), key
