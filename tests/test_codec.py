"""JukeboxCodec: architecture, shapes, gradients, training and persistence."""

from __future__ import annotations

import logging
import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import (
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from conchshell.codec import jukebox
from conchshell.codec.jukebox import JukeboxCodec, linf_loss, multispectral_loss
from conchshell.metrics import codebook_usage
from conchshell.training import budget_cosine_schedule

PAPER_COUNTS = {0: (441_856, 458_177), 1: (116_384, 124_641), 2: (168_224, 176_481)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread avoids OpenMP spinning on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def paper() -> JukeboxCodec:
    return JukeboxCodec.sized("paper", device="cpu", random_state=0).initialize()


@pytest.fixture(scope="module")
def tiny() -> JukeboxCodec:
    return JukeboxCodec.sized("tiny", device="cpu", random_state=0).initialize()


def _tones(n: int, samples: int, seed: int = 0) -> torch.Tensor:
    """Runs of decaying harmonic notes, a crude piano stand-in with a deterministic seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    clips = []
    for _ in range(n):
        wave = np.zeros(samples)
        for onset in np.arange(0, t[-1], 0.05):
            f0 = rng.uniform(110, 1760)
            local = t - onset
            env = np.where(local >= 0, np.exp(-40 * np.clip(local, 0, None)), 0.0)
            wave += env * sum(np.sin(2 * np.pi * f0 * h * local) / h for h in (1, 2, 3))
        clips.append(0.5 * wave / np.abs(wave).max())
    return torch.tensor(np.stack(clips), dtype=torch.float32)


# ---------------------------------------------------------------- architecture
@pytest.mark.parametrize("level", [0, 1, 2])
def test_paper_parameter_counts_per_level(paper: JukeboxCodec, level: int) -> None:
    enc, dec = PAPER_COUNTS[level]
    assert sum(p.numel() for p in paper.module_.encoders[level].parameters()) == enc
    assert sum(p.numel() for p in paper.module_.decoders[level].parameters()) == dec
    assert paper.module_.bottleneck.level_blocks[level].k.shape == (2048, 64)


def test_paper_total_parameter_count(paper: JukeboxCodec) -> None:
    # Codebooks are buffers, as in the released file, so only the convs count.
    assert paper.n_parameters() == sum(e + d for e, d in PAPER_COUNTS.values())


def test_state_dict_follows_official_layout(paper: JukeboxCodec) -> None:
    sd = paper.module_.state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    # Level 0 encoder: three down steps, then the k3 conv to the 64-d latent.
    assert shapes["encoders.0.level_blocks.0.model.0.0.weight"] == (64, 1, 4)
    assert shapes["encoders.0.level_blocks.0.model.0.1.model.7.model.1.weight"] == (64, 64, 3)
    assert shapes["encoders.0.level_blocks.0.model.0.1.model.7.model.3.weight"] == (64, 64, 1)
    assert shapes["encoders.0.level_blocks.0.model.3.weight"] == (64, 64, 3)
    # Level 1 encoder: level 1's width in both blocks; block 1 starts from the latent width.
    assert shapes["encoders.1.level_blocks.0.model.0.0.weight"] == (32, 1, 4)
    assert shapes["encoders.1.level_blocks.1.model.0.0.weight"] == (32, 64, 4)
    assert shapes["encoders.2.level_blocks.2.model.2.weight"] == (64, 32, 3)
    # Decoders: first conv from the latent, residual stack then transposed conv.
    assert shapes["decoders.0.level_blocks.0.model.0.weight"] == (64, 64, 3)
    assert shapes["decoders.0.level_blocks.0.model.3.1.weight"] == (64, 64, 4)
    assert shapes["decoders.2.level_blocks.2.model.0.weight"] == (32, 64, 3)
    assert shapes["decoders.2.level_blocks.0.model.3.1.weight"] == (32, 64, 4)
    assert shapes["decoders.1.out.weight"] == (1, 64, 3)
    assert shapes["bottleneck.level_blocks.1.k"] == (2048, 64)
    # EMA statistics are not saved (the official file lacks them).
    assert not [k for k in sd if k.endswith(("k_sum", "k_elem"))]
    assert len(sd) == 669
    allowed = ("encoders.", "decoders.", "bottleneck.level_blocks.")
    assert all(k.startswith(allowed) for k in sd)


def test_dilations_grow_in_encoder_and_reverse_in_decoder(paper: JukeboxCodec) -> None:
    m = paper.module_
    enc = m.encoders[0].level_blocks[0].model[0][1].model
    dec = m.decoders[0].level_blocks[0].model[1][0].model
    assert [u.model[1].dilation[0] for u in enc] == [3**i for i in range(8)]
    assert [u.model[1].dilation[0] for u in dec] == [3**i for i in reversed(range(8))]
    assert [u.model[1].padding[0] for u in enc] == [3**i for i in range(8)]


def test_presets_are_plain_parameter_sets() -> None:
    small = JukeboxCodec.sized("small", random_state=3)
    assert not hasattr(small, "module_")
    again = clone(small)
    assert again.get_params() == small.get_params()
    assert small.l_bins == 2048 and small.widths == (32, 16, 16)
    assert small.lr_schedule == "cosine" and JukeboxCodec().lr_schedule == "constant"
    assert [small.hop_length(level) for level in range(3)] == [8, 32, 128]
    # The CPU preset keeps the paper's latent shapes with 242,435 parameters (paper: 1,485,763).
    small.initialize()
    assert small.n_parameters() == 242_435
    audio = torch.randn(1, 1024) * 0.1
    assert [tuple(small.transform(audio, level).shape) for level in range(3)] == [
        (1, 64, 128),
        (1, 64, 32),
        (1, 64, 8),
    ]
    assert JukeboxCodec.sized("paper").get_params() == JukeboxCodec().get_params()
    assert JukeboxCodec.sized("tiny", l_bins=8).l_bins == 8


@pytest.mark.parametrize(
    "check",
    [
        check_get_params_invariance,
        check_set_params,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_estimator_repr,
        check_estimator_cloneable,
    ],
)
def test_sklearn_api(check) -> None:
    check("JukeboxCodec", JukeboxCodec.sized("small"))


# ---------------------------------------------------------------- shapes
def test_hops_and_paper_latent_lengths(paper: JukeboxCodec) -> None:
    assert [paper.hop_length(name) for name in ("deep", "low", "high")] == [8, 32, 128]
    assert [paper.latent_length(128_000, level) for level in range(3)] == [16000, 4000, 1000]
    audio = torch.randn(2, 1024) * 0.1
    for level, steps in ((0, 128), (1, 32), (2, 8)):
        assert paper.transform(audio, level=level).shape == (2, 64, steps)
        assert paper.encode(audio, level=level).shape == (2, steps)


def test_eight_seconds_at_the_high_level(paper: JukeboxCodec) -> None:
    audio = torch.randn(1, 128_000) * 0.1
    latents = paper.transform(audio, level="high")
    assert latents.shape == (1, 64, 1000)
    assert paper.decode(latents, level="high").shape == (1, 128_000)


@pytest.mark.slow
def test_eight_seconds_at_every_level(paper: JukeboxCodec) -> None:
    audio = torch.randn(1, 128_000) * 0.1
    for level, steps in ((0, 16000), (1, 4000), (2, 1000)):
        latents = paper.transform(audio, level=level)
        assert latents.shape == (1, 64, steps)
        assert paper.decode(latents, level=level).shape == (1, 128_000)


def test_lengths_are_padded_and_trimmed(tiny: JukeboxCodec) -> None:
    audio = torch.randn(3, 1001) * 0.1
    assert tiny.transform(audio, level="high").shape == (3, 16, 126)  # ceil(1001 / 8)
    assert tiny.encode(audio, level="low").shape == (3, 251)
    assert tiny.reconstruct(audio, level="high").shape == (3, 1001)
    assert tiny.decode(tiny.encode(audio, "high"), "high").shape == (3, 1008)
    assert tiny.decode(tiny.encode(audio, "high"), "high", length=1001).shape == (3, 1001)
    # Padding is silence appended at the end: the first steps do not depend on it.
    full = tiny.transform(torch.nn.functional.pad(audio, (0, 7)), level="high")
    assert torch.equal(tiny.transform(audio, level="high"), full)


def test_accepted_audio_forms(tiny: JukeboxCodec) -> None:
    audio = torch.randn(2, 64)
    ref = tiny.transform(audio, "deep")
    torch.testing.assert_close(tiny.transform(audio[:, None, :], "deep"), ref)
    torch.testing.assert_close(tiny.transform(audio.numpy(), 0), ref)
    torch.testing.assert_close(tiny.transform(audio[0], "deep"), ref[:1])


def test_decode_codes_equals_decode_of_quantized_latents(tiny: JukeboxCodec) -> None:
    audio = torch.randn(2, 256) * 0.2
    latents = tiny.transform(audio, "low")
    quantized, codes = tiny.quantize(latents, "low")
    assert codes.dtype == torch.long and codes.shape == (2, 64)
    assert torch.equal(codes, tiny.encode(audio, "low"))
    book = tiny.module_.bottleneck.level_blocks[1].k
    torch.testing.assert_close(quantized, book[codes].permute(0, 2, 1))
    torch.testing.assert_close(tiny.decode(codes, "low"), tiny.decode(quantized, "low"))
    # lookup gives the codebook's rows exactly (the straight-through output need not be).
    assert torch.equal(tiny.lookup(codes, "low"), book[codes].permute(0, 2, 1))
    # snap is that lookup from one search, without a gradient path.
    tracked = latents.clone().requires_grad_(True)
    snapped = tiny.snap(tracked, "low")
    assert torch.equal(snapped, tiny.lookup(codes, "low")) and not snapped.requires_grad
    with pytest.raises(ValueError, match="latents must have shape"):
        tiny.snap(latents[:, :3], "low")
    with pytest.raises(TypeError, match="codes must be integers"):
        tiny.lookup(codes.float(), "low")
    with pytest.raises(ValueError, match=r"codes must lie in \[0, "):
        tiny.lookup(codes + tiny.l_bins, "low")
    torch.testing.assert_close(
        tiny.decode(latents, "low", quantize=True), tiny.decode(codes, "low")
    )
    # The nearest codebook vector really is the nearest (random latents hit many codes).
    spread = torch.randn(3, 16, 50)
    _, codes = tiny.quantize(spread, "low")
    brute = torch.cdist(spread.permute(0, 2, 1).reshape(-1, 16), book).argmin(dim=1)
    assert torch.equal(brute, codes.reshape(-1))
    assert codes.unique().numel() > 16


def test_nearest_is_argmin_across_chunks_with_ties_and_nan() -> None:
    """The chunked search picks argmin's code: the first of tied codes, NaN's own row."""
    book = jukebox._Codebook(l_bins=37, emb=5, mu=0.99)
    book.k.copy_(torch.randint(-2, 3, (37, 5)).float())
    book.k[20] = book.k[3]  # a duplicate row: every tie must go to 3
    flat = torch.randint(-2, 3, (101, 5)).float()
    flat[7] = book.k[3]
    flat[50, 2] = float("nan")
    dist = (book.k**2).sum(dim=1) - 2 * flat @ book.k.T
    want = dist.argmin(dim=1)
    for chunk in (1, 10, 64, 101, 4096):  # 101 rows: a ragged last chunk, and none
        got = book.nearest(flat, chunk=chunk)
        assert got.dtype == torch.long and torch.equal(got, want), chunk
    assert int(book.nearest(flat)[7]) == 3
    assert book.nearest(flat[:0]).shape == (0,)


# ---------------------------------------------------------------- gradients
def test_gradients_reach_latents_through_a_frozen_decoder() -> None:
    codec = JukeboxCodec.sized("tiny", random_state=0, frozen=True).initialize()
    assert not any(p.requires_grad for p in codec.module_.parameters())
    target = torch.randn(2, 512) * 0.1
    latents = (torch.randn(2, 16, 64) * 0.5).requires_grad_(True)
    quantized, _ = codec.quantize(latents, "high")
    audio = codec.decode(quantized, "high")
    assert audio.requires_grad
    torch.nn.functional.l1_loss(audio, target).backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0
    assert all(p.grad is None for p in codec.module_.parameters())


def test_straight_through_passes_gradient_unchanged(tiny: JukeboxCodec) -> None:
    latents = torch.randn(1, 16, 10, requires_grad=True)
    quantized, _ = tiny.quantize(latents, "deep")
    weights = torch.randn_like(quantized)
    (quantized * weights).sum().backward()
    assert torch.equal(latents.grad, weights)


def test_freeze_returns_self_and_stops_training() -> None:
    codec = JukeboxCodec.sized("tiny", random_state=0).initialize()
    assert codec.freeze() is codec
    assert codec.n_parameters(trainable_only=True) == 0
    with pytest.raises(ValueError, match="frozen=True"):
        JukeboxCodec.sized("tiny", frozen=True).fit(torch.randn(2, 2048))


# ---------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained() -> JukeboxCodec:
    return JukeboxCodec.sized("tiny", random_state=0, max_steps=40).fit(_tones(8, 4096))


def test_training_lowers_the_loss(trained: JukeboxCodec) -> None:
    losses = [r["loss"] for r in trained.history_]
    assert len(losses) == trained.n_steps_ == 40
    assert np.isfinite(losses).all()
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.9 * first
    assert {"recons_0", "spectral_2", "commit_1", "used_0", "perplexity_2", "revived_1"} <= set(
        trained.history_[0]
    )


def test_training_keeps_the_codebooks_in_use(trained: JukeboxCodec) -> None:
    clips = _tones(8, 4096)
    for level in range(3):
        usage = codebook_usage(trained.encode(clips, level), trained.l_bins)
        # Floor: at least 10 of the 32 codes (about 13-15 are used), perplexity >= 5.
        assert usage["n_used"] >= 10, (level, usage)
        assert usage["perplexity"] >= 5.0, (level, usage)


def test_training_is_deterministic_for_a_seed(trained: JukeboxCodec) -> None:
    again = JukeboxCodec.sized("tiny", random_state=0, max_steps=40).fit(_tones(8, 4096))
    assert [r["loss"] for r in again.history_] == [r["loss"] for r in trained.history_]
    for (name, a), (_, b) in zip(
        trained.module_.state_dict().items(), again.module_.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_fit_accepts_a_dataset_of_items_and_respects_max_time() -> None:
    class Items(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int):
            return torch.zeros(3, 8, 8), _tones(1, 2048, seed=i)[0], i

    codec = JukeboxCodec.sized("tiny", random_state=1, max_steps=3).fit(Items())
    assert codec.n_steps_ == 3
    timed = JukeboxCodec.sized("tiny", random_state=1, max_steps=10**6, max_time=0.5).fit(Items())
    assert 1 <= timed.n_steps_ < 10**6


def test_cosine_schedule_anneals_over_the_step_budget() -> None:
    audio = _tones(2, 2048, seed=0)
    constant = JukeboxCodec.sized("tiny", random_state=0, max_steps=4).fit(audio)
    assert [r["lr"] for r in constant.history_] == [3e-3] * 4
    cosine = JukeboxCodec.sized("tiny", random_state=0, max_steps=4, lr_schedule="cosine")
    cosine.fit(audio)
    # 0.5 * lr * (1 + cos(pi * step / 4)) for steps 0..3
    expected = [3e-3, 3e-3 * (2 + 2**0.5) / 4, 1.5e-3, 3e-3 * (2 - 2**0.5) / 4]
    assert [r["lr"] for r in cosine.history_] == pytest.approx(expected, rel=1e-12)


def test_cosine_schedule_follows_the_time_budget_when_it_binds() -> None:
    codec = JukeboxCodec.sized("tiny", max_steps=10**9, max_time=100.0, lr_schedule="cosine")
    assert codec._budget_spent(0, 0.0) == 0.0
    assert codec._budget_spent(10, 50.0) == 0.5
    assert codec._budget_spent(10, 150.0) == 1.5
    # fit anneals over that share with budget_cosine_schedule, which stops at zero past 1
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
    spent = iter([0.0, 0.5, 1.5])
    schedule = budget_cosine_schedule(optimizer, lambda: next(spent))
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(2):
        optimizer.step()
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == [3e-3, 1.5e-3, 0.0]


def test_a_non_finite_step_is_skipped_and_recorded(monkeypatch, caplog) -> None:
    audio = _tones(2, 2048, seed=0)
    clean = JukeboxCodec.sized("tiny", random_state=0, max_steps=3, verbose=0).fit(audio)
    codec = JukeboxCodec.sized("tiny", random_state=0, max_steps=3, verbose=0)
    calls = []

    def faulty(target: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
        calls.append(1)  # one call per level and step: poison the second step's first level
        value = linf_loss(target, estimate)
        return value * math.nan if len(calls) == codec.levels + 1 else value

    monkeypatch.setattr(jukebox, "linf_loss", faulty)
    with caplog.at_level(logging.WARNING, logger="conchshell"):
        codec.fit(audio)
    assert [h.get("skipped") for h in codec.history_] == [None, "non-finite loss", None]
    assert [h["n_skipped"] for h in codec.history_] == [0, 1, 1]
    assert [h["step"] for h in codec.history_] == [1, 2, 3]
    assert math.isnan(codec.history_[1]["loss"])
    assert codec.history_[0]["loss"] == clean.history_[0]["loss"]
    assert [r.getMessage() for r in caplog.records] == [
        "codec: update skipped at step 2: non-finite loss"
    ]


def test_fit_reads_each_piece_of_a_library_dataset_once() -> None:
    class Pieces:
        """Duck-types the library datasets: three images, two pieces of music."""

        def __init__(self) -> None:
            self.audio_paths = ["a.wav", "b.wav", "a.wav"]
            self.requested: list[int] = []

        def __len__(self) -> int:
            return 3

        def stack_audio(self, indices):
            self.requested = list(indices)
            return _tones(len(indices), 2048)

    data = Pieces()
    codec = JukeboxCodec.sized("tiny", random_state=0, max_steps=2).fit(data)
    assert data.requested == [0, 1] and codec.n_steps_ == 2


def test_losses_are_zero_for_identical_signals() -> None:
    x = _tones(2, 2048)
    assert float(linf_loss(x, x)) == 0.0
    assert float(multispectral_loss(x, x, (256,), (64,), (256,))) == 0.0
    assert float(multispectral_loss(x, 0.5 * x, (256,), (64,), (256,))) > 0.5


# ---------------------------------------------------------------- persistence
def test_save_and_load_round_trip(tmp_path, trained: JukeboxCodec) -> None:
    path = trained.save(tmp_path / "codec.safetensors")
    loaded = JukeboxCodec.load(path)
    audio = _tones(2, 1000, seed=5)
    for level in range(3):
        assert torch.equal(loaded.reconstruct(audio, level), trained.reconstruct(audio, level))
    book, again = (
        trained.module_.bottleneck.level_blocks[0],
        loaded.module_.bottleneck.level_blocks[0],
    )
    assert torch.equal(book.k_elem, again.k_elem) and torch.equal(book.k_sum, again.k_sum)
    by_weights = JukeboxCodec.sized("tiny", weights=path, random_state=9).initialize()
    assert torch.equal(by_weights.encode(audio, 0), trained.encode(audio, 0))
    with pytest.raises(ValueError, match="safetensors"):
        trained.save(tmp_path / "codec.pt")


def test_fit_writes_checkpoints(tmp_path) -> None:
    codec = JukeboxCodec.sized("tiny", random_state=0, max_steps=4, checkpoint_dir=tmp_path)
    codec.checkpoint_every = 2
    codec.fit(_tones(2, 2048))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codec-last.safetensors"]
    loaded = JukeboxCodec.load(tmp_path / "codec-last.safetensors")
    assert loaded.get_params()["max_steps"] == 4


def test_pickle_and_clone(trained: JukeboxCodec) -> None:
    copy = pickle.loads(pickle.dumps(trained))
    audio = _tones(1, 512)
    assert torch.equal(copy.encode(audio, 1), trained.encode(audio, 1))
    fresh = clone(trained)
    assert not hasattr(fresh, "module_") and fresh.get_params() == trained.get_params()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("audio", "match"),
    [
        (torch.full((1, 64), float("nan")), "NaN"),
        (torch.zeros(1, 2, 64), "mono"),
        (torch.zeros(1, 1, 1, 64), "dimensions"),
        (torch.zeros(0, 64), "empty"),
        (torch.zeros(2, 0), "no samples"),
    ],
)
def test_bad_audio_is_a_clear_error(tiny: JukeboxCodec, audio, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny.transform(audio)


def test_bad_codes_latents_and_levels(tiny: JukeboxCodec) -> None:
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        tiny.decode(torch.full((1, 4), 32, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        tiny.decode(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(batch, 16, time\)"):
        tiny.decode(torch.zeros(1, 8, 4))
    with pytest.raises(ValueError, match="NaN"):
        tiny.quantize(torch.full((1, 16, 4), float("inf")))
    with pytest.raises(ValueError, match="level"):
        tiny.transform(torch.zeros(1, 64), level="middle")
    with pytest.raises(ValueError, match="does not exist"):
        JukeboxCodec.sized(
            "tiny", levels=1, downs_t=(1,), strides_t=(2,), widths=(8,), depths=(1,)
        ).initialize().transform(torch.zeros(1, 64), level="high")
    with pytest.raises(ValueError, match="length"):
        tiny.decode(torch.zeros(1, 4, dtype=torch.long), length=100)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"downs_t": (1, 1)}, "downs_t"),
        ({"widths": (8, 0, 8)}, "widths"),
        ({"l_bins": 0}, "l_bins"),
        ({"mu": 1.0}, "mu"),
        ({"hops": (64, 32)}, "equally long"),
        ({"windows": (512, 128, 64)}, "window"),
        ({"max_time": -1}, "max_time"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
    ],
)
def test_bad_parameters_fail_at_initialize(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        JukeboxCodec.sized("tiny", **params).initialize()


def test_untrained_use_and_bad_fit_input() -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        JukeboxCodec.sized("tiny").transform(torch.zeros(1, 64))
    with pytest.raises(ValueError, match="too short"):
        JukeboxCodec.sized("tiny", segment_length=64).fit(torch.zeros(2, 2048))
    with pytest.raises(TypeError, match="numeric"):
        JukeboxCodec.sized("tiny").fit([["a", "b"]])
