"""The flow-matching generator: shapes, sizes, draws, guidance, and that it samples pieces.

Issue 19: regression (IMLE's included) lands between the pieces of a scene,
and the average loses the scene. A flow generator integrates from a noise
draw to one piece; these tests pin that on a toy task, and the component's
contract inside :class:`~conchshell.ImageToMusic` (the ``flow`` preset).
"""

import numpy as np
import pytest
import torch

from conchshell.gan.flow import FlowGenerator
from conchshell.gan.flow_net import FlowNet
from conchshell.profile import count_parameters


def tiny(**params):
    settings = {
        "level": "high",
        "size": "tiny",
        "in_features": 8,
        "n_categories": 2,
        "emb_width": 4,
        "n_frames": 32,
        "crop_frames": 32,
        "device": "cpu",
        "random_state": 0,
    }
    return FlowGenerator(**{**settings, **params})


@pytest.mark.parametrize(
    ("size", "expected"),
    # Counted by hand from FlowNet's layers (fine width 16 / 128 / 256, conditioning 2x).
    [("tiny", 97_056), ("small", 3_813_888), ("paper", 14_574_336)],
)
def test_parameter_counts(size, expected):
    g = FlowGenerator("deep", size=size, in_features=512, device="cpu").initialize()
    assert count_parameters(g.module_) == expected


@pytest.mark.parametrize("n_frames", [1, 15, 16, 33, 1000])
def test_any_length_comes_back_whole(n_frames):
    g = tiny(n_frames=n_frames).initialize()
    out = g.transform(torch.zeros(3, 8), [0, 1, 0])
    assert out.shape == (3, 4, n_frames) and out.dtype == torch.float32


def test_untrained_network_is_the_identity_flow_and_scaling_is_fitted_once():
    g = tiny(max_steps=1).initialize()
    z = g.sample_noise(2)
    # Zero-initialised output layer: the velocity is 0, so the latents are the draw.
    torch.testing.assert_close(g.transform(torch.zeros(2, 8), [0, 1], z), z)
    rng = np.random.RandomState(0)
    latents = (5 + 3 * rng.randn(6, 4, 32)).astype(np.float32)
    g.fit(rng.randn(6, 8).astype(np.float32), latents, [0, 1] * 3)
    net = g.module_
    np.testing.assert_allclose(net.latent_mean.numpy(), latents.mean((0, 2)), rtol=1e-5)
    np.testing.assert_allclose(net.latent_scale.numpy(), latents.std((0, 2), ddof=1), rtol=1e-4)
    before = net.latent_mean.clone()
    g.set_params(warm_start=True).fit(np.zeros((6, 8), np.float32), latents + 100, [0, 1] * 3)
    torch.testing.assert_close(net.latent_mean, before)  # a continued fit keeps its scaling
    assert [h["step"] for h in g.history_] == [1, 2]


def test_noise_rows_are_stable_and_seeded():
    g = tiny().initialize()
    assert torch.equal(g.sample_noise(5)[:2], g.sample_noise(2))
    assert not torch.equal(g.sample_noise(2, seed=1), g.sample_noise(2))
    x = torch.randn(4, 8)
    torch.testing.assert_close(g.transform(x, [0, 1, 0, 1])[:2], g.transform(x[:2], [0, 1]))


def test_guided_velocity_is_the_two_passes_combined():
    torch.manual_seed(0)
    net = FlowNet(4, 8, 2, channels=16, cond_dim=32)
    for p in net.parameters():  # the zero-initialised layers would make every velocity 0
        torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(3, 4, 32), torch.rand(3)
    cats, feats = torch.tensor([0, 1, 1]), torch.randn(3, 8)
    cond = net(x, t, cats, feats)
    uncond = net(x, t, torch.full_like(cats, net.null_category), net.feature_mean.expand(3, 8))
    torch.testing.assert_close(
        net(x, t, cats, feats, 2.5), uncond + 2.5 * (cond - uncond), atol=1e-4, rtol=1e-4
    )
    assert not torch.allclose(cond, uncond)


def test_fit_leaves_the_moving_average_of_the_weights():
    rng = np.random.RandomState(0)
    data = (rng.randn(6, 8).astype(np.float32), rng.randn(6, 4, 32).astype(np.float32), [0, 1] * 3)

    def weights(**params):
        g = tiny(lr_schedule="constant", batch_size=4, max_epochs=10, **params).fit(*data)
        return [p.detach().clone() for p in g.module_.parameters()]

    first, second = weights(max_steps=1, ema_decay=None), weights(max_steps=2, ema_decay=None)
    averaged = weights(max_steps=2, ema_decay=0.25)
    assert any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))
    for a, b, m in zip(first, second, averaged, strict=True):
        # The average starts at the first step's weights, then moves 0.75 of the way.
        torch.testing.assert_close(m, 0.25 * a + 0.75 * b)


def two_pieces(**params):
    """Fit on two pieces of one category; the features say nothing about which."""
    rng = np.random.RandomState(0)
    pieces = 4 * rng.randn(2, 4, 32).astype(np.float32)
    targets = pieces[np.arange(16) % 2]
    feats = np.zeros((16, 8), np.float32)
    settings = {"lr": 1e-2, "batch_size": 16, "max_steps": 300, "max_epochs": 10**6}
    # Constant rate, last weights: 300 steps are too few for an average over ~1000.
    settings.update(guidance=1.0, lr_schedule="constant", ema_decay=None)
    g = tiny(**{**settings, **params})
    out = g.fit(feats, targets, np.zeros(16, int)).transform(feats, np.zeros(16, int)).numpy()
    to_piece = np.abs(out[:, None] - pieces[None]).mean((2, 3))
    return {
        "to_nearer_piece": float(to_piece.min(1).mean()),
        "to_mean": float(np.abs(out - pieces.mean(0)).mean()),
        "hits": np.bincount(to_piece.argmin(1), minlength=2).tolist(),
        "apart": float(np.abs(pieces[0] - pieces[1]).mean()),
    }


def test_samples_land_on_pieces_not_between_them():
    r = two_pieces()
    # Measured: 0.76 from the nearer piece, 2.23 from the pieces' mean (they are 4.42 apart),
    # and both pieces drawn (5 and 11 of 16); L1 regression would sit on the mean.
    assert r["to_nearer_piece"] < 0.25 * r["apart"]
    assert r["to_mean"] > 0.4 * r["apart"]
    assert min(r["hits"]) >= 4


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("cond_dropout", 1.0, "cond_dropout must be in"),
        ("guidance", "strong", "guidance must be a number"),
        ("n_steps", 0, "n_steps"),
        ("crop_frames", -1, "crop_frames"),
        ("lr", 0, "lr must be a positive number"),
        ("size", "huge", "size must be one of"),
        ("ema_decay", 1.0, "ema_decay must be in"),
        ("lr_schedule", "linear", "lr_schedule must be one of"),
    ],
)
def test_bad_settings_name_the_value(param, value, message):
    g = tiny(**{param: value})
    with pytest.raises(ValueError, match=message):
        g.fit(np.zeros((2, 8), np.float32), np.zeros((2, 4, 32), np.float32), [0, 1])


def test_bad_inputs_name_what_is_wrong():
    g = tiny().initialize()
    with pytest.raises(ValueError, match="noise"):
        g.transform(torch.zeros(2, 8), [0, 1], torch.zeros(2, 4, 31))
    with pytest.raises(ValueError, match="categor"):
        g.transform(torch.zeros(2, 8), [0, 2])
    with pytest.raises(ValueError, match="contradicts"):
        tiny(emb_width=4).initialize(emb_width=8)
    with pytest.raises(ValueError, match="latents"):
        g.fit(np.zeros((2, 8), np.float32), np.full((2, 4, 32), np.nan, np.float32), [0, 1])


def test_flow_preset_fits_saves_loads_and_optimizes(tmp_path):
    from conchshell import ImageToMusic, optimize, presets
    from conchshell.datasets import make_toy_dataset

    data = make_toy_dataset(1, n_samples=16000)
    model = presets.flow("tiny", random_state=0).fit(data)
    assert type(model.generator_).__name__ == "FlowGenerator"
    assert model.history_ == []  # no adversarial stage
    assert model.generator_.history_[-1]["step"] == 2
    images = data.stack_images()[:3]
    clips = model.predict(images)
    assert clips.shape == (3, 16000) and np.isfinite(clips).all()
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(ImageToMusic.load(tmp_path / "m").predict(images), clips)
    np.testing.assert_allclose(optimize(model, precision="float32").predict(images), clips)
    fast = optimize(model, precision="bfloat16").predict(images)
    assert fast.shape == clips.shape and np.isfinite(fast).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [({"max_steps": 3}, "set max_steps=0"), ({"warm_start_steps": 0}, "warm_start_steps > 0")],
)
def test_flow_preset_refuses_settings_it_cannot_train(params, message):
    from conchshell import presets
    from conchshell.datasets import make_toy_dataset

    with pytest.raises(ValueError, match=message):
        presets.flow("tiny", **params).fit(make_toy_dataset(1, n_samples=16000))


def test_table1_covers_the_papers_presets_and_refuses_flow():
    from conchshell import presets
    from conchshell.reports import table1

    assert "flow" in presets.PRESETS and "flow" not in presets.PAPER_PRESETS
    with pytest.raises(ValueError, match="preset 'flow' has no Table 1 row"):
        table1("tiny", presets=["flow"])
