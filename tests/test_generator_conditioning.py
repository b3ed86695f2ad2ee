"""Why the generator listens to its input: signal-preserving init, feature scaling, noise, IMLE.

The paper's recipe gave a generator that wrote the same clip for every picture
(issue 19). These tests pin the three fixes: an initialisation that keeps the
categories apart through the stack, features scaled to the embedding's size,
and a noise input trained by conditional IMLE, which matches each target
piece with one sample instead of regressing every sample to the pieces' mean.
"""

import numpy as np
import pytest
import torch

from conchshell.gan.generator import Generator
from conchshell.profile import count_parameters


def small_deep(**params):
    return Generator(
        "deep", size="small", in_features=512, device="cpu", random_state=0, **params
    ).initialize()


def category_spread(g):
    """Spread across the six categories at the output, over the output's own spread."""
    with torch.no_grad():
        out = g.module_.eval()(torch.zeros(6, 512), torch.arange(6))
    return float(out.std(0).mean() / out.std())


def test_he_init_keeps_the_categories_apart():
    # torch's default init fades the category signal about 0.6x per convolution.
    assert category_spread(small_deep()) < 1e-3
    assert category_spread(small_deep(init_std="he")) > 0.05  # measured 0.072
    g = small_deep(init_std="he")
    assert float(g.module_.frames.bias.abs().max()) == 0.0
    with torch.no_grad():
        out = g.module_(torch.zeros(6, 512), torch.arange(6))
    # The output layer's gain keeps tanh(x) * 100 out of saturation at the start.
    assert float(out.abs().max()) < 50.0
    with pytest.raises(ValueError, match="'he'"):
        small_deep(init_std="xavier")


def tiny(**params):
    defaults = {"in_features": 8, "n_frames": 16, "emb_width": 4, "size": "tiny"}
    defaults.update(params)
    return Generator("low", device="cpu", random_state=0, **defaults)


def test_noise_input_sizes_and_draws():
    plain, noisy = tiny().initialize(), tiny(noise_dim=3).initialize()
    # Only the input Linear grows, by noise_dim inputs per output step.
    width = plain.module_.linear.out_features
    assert count_parameters(noisy.module_) - count_parameters(plain.module_) == 3 * width
    x, c = torch.randn(5, 8), torch.tensor([0, 1, 2, 3, 4])
    out = noisy.transform(x, c)
    # The default noise is seeded: the same call gives the same latents, row by row.
    assert torch.equal(noisy.transform(x, c), out)
    # The same noise rows whatever the batch (the kernels may round a batch of 2 differently).
    torch.testing.assert_close(noisy.transform(x[:2], c[:2]), out[:2], rtol=1e-5, atol=1e-4)
    assert torch.equal(noisy.sample_noise(5)[:2], noisy.sample_noise(2))
    other = noisy.transform(x, c, noisy.sample_noise(5, seed=7))
    assert not torch.allclose(other, out)
    with pytest.raises(ValueError, match="noise"):
        noisy.transform(x, c, torch.zeros(5, 2))
    with pytest.raises(ValueError, match="noise_dim=0"):
        plain.transform(x, c, torch.zeros(5, 3))
    assert plain.sample_noise(5) is None
    with pytest.raises(ValueError, match="noise_dim"):
        tiny(noise_dim=-1).initialize()


def test_feature_scaling_is_fitted_once_and_saved():
    rng = np.random.RandomState(0)
    x = (0.01 + 0.003 * rng.randn(12, 8)).astype(np.float32)
    y = rng.randn(12, 4, 16).astype(np.float32)
    g = tiny(feature_scaling=True, max_steps=1).fit(x, y, rng.randint(0, 6, 12))
    np.testing.assert_allclose(g.module_.feature_mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(g.module_.feature_scale.numpy(), x.std(0, ddof=1), rtol=1e-4)
    assert {"feature_mean", "feature_scale"} <= set(g.module_.state_dict())
    # A continued fit keeps the scaling the weights learned with.
    g.set_params(warm_start=True).fit(x * 10, y, np.zeros(12, dtype=int))
    np.testing.assert_allclose(g.module_.feature_mean.numpy(), x.mean(0), rtol=1e-5)


def fit_two_pieces(**params):
    """One category, one picture, two unrelated pieces: only the noise can tell them apart."""
    rng = np.random.RandomState(0)
    pieces = 10 * rng.randn(2, 4, 16).astype(np.float32)
    targets = pieces[rng.randint(0, 2, 32)]
    zeros = np.zeros((32, 8), np.float32)
    g = tiny(init_std="he", noise_dim=4, lr=1e-2, batch_size=16, max_epochs=100, **params)
    g.fit(zeros, targets, np.zeros(32, dtype=int))
    out = g.transform(zeros[:16], np.zeros(16, dtype=int)).numpy()
    to_piece = np.stack([np.abs(out - piece).mean((1, 2)) for piece in pieces], 1)
    return {
        "to_nearer_piece": float(to_piece.min(1).mean()),
        "to_mean": float(np.abs(out - pieces.mean(0)).mean()),
        "spread": float(out.std(0).mean()),
        "hits": np.bincount(to_piece.argmin(1), minlength=2).tolist(),
    }


def test_imle_matches_pieces_where_l1_averages_them():
    # The pieces are 12.9 apart (mean absolute difference).
    l1 = fit_two_pieces()  # noise, but one candidate: plain L1 regression
    imle = fit_two_pieces(n_candidates=8)
    # Measured: L1 lands on the pieces' mean (2.45 from it, 6.15 from either piece) and
    # ignores the noise (spread 0.05); IMLE lands on the pieces (1.45 from the nearer one),
    # both of them (7 and 9 of 16 draws), and the noise picks which (spread 5.89).
    assert l1["to_mean"] < 3.0 < 5.0 < l1["to_nearer_piece"] and l1["spread"] < 0.5
    assert imle["to_nearer_piece"] < 2.0 and imle["to_mean"] > 5.0 and imle["spread"] > 5.0
    assert min(imle["hits"]) >= 4


def test_a_short_fit_tells_inputs_apart_and_beats_the_constant_mean():
    # Each category has its own piece plus per-clip noise; the photos' features say nothing.
    rng = np.random.RandomState(0)
    pieces = 10 * rng.randn(6, 4, 16).astype(np.float32)
    cats = np.repeat(np.arange(6), 8)
    targets = pieces[cats] + 3 * rng.randn(48, 4, 16).astype(np.float32)
    features = (0.01 + 0.003 * rng.randn(48, 8)).astype(np.float32)  # untrained-I3D scale
    g = tiny(init_std="he", feature_scaling=True, lr=1e-2, batch_size=16, max_epochs=40)
    out = g.fit(features, targets, cats).transform(features, cats).numpy()
    # Measured: the two categories' outputs are 12.5 apart (their pieces 12.9), and the fit's
    # L1 is 2.50 against 7.69 for the best constant guess (the targets' mean).
    assert np.abs(out[cats == 0].mean(0) - out[cats == 1].mean(0)).mean() > 10.0
    fitted_l1 = np.abs(out - targets).mean()
    constant_l1 = np.abs(targets.mean(0) - targets).mean()
    assert fitted_l1 < 0.5 * constant_l1


@pytest.mark.parametrize("level", ["low", "high"])
def test_at_frames_is_the_forward_pass_at_those_frames(level):
    g = Generator(level, size="tiny", in_features=8, n_frames=40, noise_dim=3, device="cpu")
    module = g.initialize().module_.eval()
    torch.manual_seed(0)
    x, c, z = torch.randn(3, 8), torch.tensor([0, 1, 2]), torch.randn(3, 3)
    frames = torch.tensor([0, 7, 8, 39])
    with torch.no_grad():
        whole, some = module(x, c, z), module.at_frames(x, c, z, frames)
    assert some.shape == (3, g.emb_width_, 4)
    torch.testing.assert_close(some, whole[..., frames], rtol=1e-5, atol=1e-4)


def test_imle_on_a_few_frames_still_matches_the_pieces():
    # A quarter of the 16 frames per search: the pieces differ on every frame, so the
    # search picks the same candidates and the fit lands on the pieces as exact IMLE does.
    imle = fit_two_pieces(n_candidates=8, search_frames=4)
    assert imle["to_nearer_piece"] < 2.0 and imle["to_mean"] > 5.0 and imle["spread"] > 5.0
    assert min(imle["hits"]) >= 4


def test_search_frames_at_or_past_the_length_is_exact_imle():
    exact = fit_two_pieces(n_candidates=8, max_steps=6)
    capped = fit_two_pieces(n_candidates=8, max_steps=6, search_frames=16)
    assert capped == exact


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_search_frames_must_be_a_positive_int(value):
    with pytest.raises((TypeError, ValueError), match="search_frames"):
        tiny(n_candidates=2, noise_dim=2, search_frames=value).fit(
            np.zeros((4, 8), np.float32), np.zeros((4, 4, 16), np.float32), np.zeros(4, int)
        )
