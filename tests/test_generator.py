"""The ConchShell generators: Table 1 sizes, shapes for any size, fit/transform, API."""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)
from torch import nn
from torch.nn.utils import parametrize

from conchshell.gan.generator import Generator, PooledGenerator, StridedGenerator
from conchshell.profile import count_parameters, profile

EMBEDDING = 6 * 256  # the category embedding Table 1 leaves out

# level: (Table 1 parameters without the embedding, Table 1 / authors' code GMACs, frames)
PAPER = {
    "high": (33_108_800, 23.800, 1000),
    "low": (65_182_528, 27.205, 4000),
    "deep": (78_298_528, 44.453, 16000),  # the authors' code; the paper prints 100.420M / 59.197G
}


@pytest.fixture(scope="module")
def paper_figures():
    """Build each paper-size generator once, measure it, and let it go.

    MACs depend on shapes only, so the forward pass of the counter runs on the
    meta device (same module, no arithmetic): seconds instead of a minute of CPU.
    """
    figures = {}
    for level in PAPER:
        module = Generator(level, device="cpu", random_state=0).initialize().module_
        counts = {"all": count_parameters(module), "type": type(module)}
        module.to("meta")
        shapes: list[tuple[int, ...]] = []
        handle = module.register_forward_hook(
            lambda m, a, out, shapes=shapes: shapes.append(tuple(out.shape))
        )
        inputs = torch.rand(1, 2048, device="meta"), torch.tensor([3], device="meta")
        prof = profile(module, *inputs, exclude=(nn.Embedding,))
        handle.remove()
        figures[level] = {**counts, "table": prof.params, "macs": prof.macs, "shape": shapes[0]}
        del module
    return figures


@pytest.mark.parametrize("level", list(PAPER))
def test_paper_parameter_counts(paper_figures, level):
    table, _, _ = PAPER[level]
    assert paper_figures[level]["table"] == table
    assert paper_figures[level]["all"] == table + EMBEDDING


@pytest.mark.parametrize("level", list(PAPER))
def test_paper_macs_within_half_a_percent(paper_figures, level):
    _, gmacs, _ = PAPER[level]
    assert paper_figures[level]["macs"] == pytest.approx(gmacs * 1e9, rel=5e-3)


@pytest.mark.parametrize("level", list(PAPER))
def test_paper_output_shape_and_structure(paper_figures, level):
    assert paper_figures[level]["shape"] == (1, 64, PAPER[level][2])
    expected = StridedGenerator if level == "high" else PooledGenerator
    assert paper_figures[level]["type"] is expected


def test_g_high_input_width_is_the_authors():
    # 4800 for 1000 frames; other lengths get the smallest width that fits.
    kernels, strides = (10, 20, 40, 60, 60), (2, 2, 1, 1, 1)
    assert StridedGenerator.input_width(1000, kernels, strides, 42) == 4800
    assert StridedGenerator.input_width(10, kernels, strides, 42) == 4 * 10 + 800


def tiny(level="deep", **kwargs):
    params = dict(
        in_features=12, emb_width=5, n_frames=24, size="tiny", device="cpu", random_state=0
    )
    params.update(kwargs)
    return Generator(level, **params)


@settings(max_examples=10, deadline=None)
@given(
    level=st.sampled_from(["high", "low", "deep", 0, 1, 2]),
    n_frames=st.integers(1, 400),
    in_features=st.integers(1, 40),
    emb_width=st.integers(1, 20),
    batch=st.integers(1, 3),
)
def test_tiny_shapes_for_any_size(level, n_frames, in_features, emb_width, batch):
    g = tiny(level, n_frames=n_frames, in_features=in_features, emb_width=emb_width).initialize()
    features = np.random.default_rng(0).random((batch, in_features))
    out = g.transform(features, np.arange(batch) % 6)
    assert out.shape == (batch, emb_width, n_frames)
    assert float(out.abs().max()) <= 100.0


@pytest.mark.parametrize(("level", "frames"), [("high", 1000), ("low", 4000), ("deep", 16000)])
def test_small_variants_default_frames(level, frames):
    g = Generator(level, in_features=256, size="small", device="cpu", random_state=0)
    g.initialize()
    assert g.n_frames_ == frames and g.level_ == {"deep": 0, "low": 1, "high": 2}[level]
    out = g.module_(torch.randn(2, 256), torch.tensor([0, 5]))
    assert out.shape == (2, 64, frames) and out.requires_grad
    assert count_parameters(g.module_) < 4_000_000


def test_weight_norm_and_initialisation():
    g = Generator("low", in_features=64, size="small", init_std=0.02, device="cpu", random_state=0)
    module = g.initialize().module_
    block = module.body[4]  # the first residual block
    assert parametrize.is_parametrized(block.shortcut, "weight")
    names = {name for name, _ in block.shortcut.named_parameters()}
    assert names == {
        "bias",
        "parametrizations.weight.original0",
        "parametrizations.weight.original1",
    }
    with torch.no_grad():
        # N(0, 0.02) reaches weight-normed and plain convolutions alike.
        for conv in (block.block[2], module.body[2]):
            assert float(conv.weight.std()) == pytest.approx(0.02, rel=0.05)
        # "auto" is 0.02 at paper size only; small and tiny keep torch's fan-in default.
        auto = Generator("low", in_features=64, size="small", device="cpu", random_state=0)
        default_std = float(auto.initialize().module_.body[2].weight.std())
        assert default_std == pytest.approx(1 / np.sqrt(3 * 16), rel=0.1)  # kaiming-uniform
    with pytest.raises(ValueError, match="init_std"):
        Generator(size="tiny", init_std=-1.0, device="cpu").initialize()


def test_transform_matches_module_and_is_seeded():
    g = tiny("low").initialize()
    x, c = torch.randn(5, 12), torch.tensor([0, 1, 2, 3, 4])
    out = g.set_params(batch_size=2).transform(x, c)
    assert not out.requires_grad and out.device.type == "cpu"
    with torch.no_grad():
        assert torch.allclose(out, g.module_.eval()(x, c), atol=1e-4)
    assert torch.allclose(tiny("low").initialize().transform(x, c), out, atol=1e-4)
    assert not torch.equal(tiny("low", random_state=1).initialize().transform(x, c), out)
    # The category changes the output.
    assert not torch.allclose(g.transform(x, [5] * 5), out)


def learnable_targets(features, categories, emb_width, n_frames):
    """Latents that depend on the category (phase) and the feature (offset)."""
    t = np.arange(n_frames) / n_frames
    freqs = np.arange(1, emb_width + 1)[None, :, None]
    mix = np.random.RandomState(1).randn(features.shape[1], emb_width) * 0.3
    waves = 20 * np.sin(2 * np.pi * freqs * t[None, None] + categories[:, None, None])
    return (waves + 5 * (features @ mix)[:, :, None]).astype(np.float32)


def test_fit_regresses_target_latents():
    rng = np.random.RandomState(0)
    features = rng.randn(16, 12).astype(np.float32)
    categories = rng.randint(0, 6, 16)
    targets = learnable_targets(features, categories, 5, 24)
    g = tiny("deep", lr=1e-2, max_epochs=40, batch_size=16)
    assert g.fit(features, targets, categories) is g
    losses = [h["loss"] for h in g.history_]
    assert len(g.history_) == 40 and g.history_[-1]["step"] == 40
    # Well below the best constant guess, and far below where it started.
    baseline = np.abs(targets - np.median(targets, axis=0)).mean()
    assert losses[-1] < 0.7 * baseline and losses[-1] < 0.5 * losses[0]
    assert not g.module_.training
    # max_steps stops early; warm_start continues the history (epochs and steps count on)
    # and the weights.
    g.set_params(max_steps=3, warm_start=True, batch_size=8)
    before = g.module_.linear.weight.detach().clone()
    g.fit(features, targets, categories)
    assert [h["step"] for h in g.history_[40:]] == [42, 43]
    assert [h["epoch"] for h in g.history_[40:]] == [41, 42]
    assert not torch.equal(before, g.module_.linear.weight)


def test_sklearn_api_checks():
    g = Generator(size="tiny", device="cpu")
    for check in (
        check_no_attributes_set_in_init,
        check_get_params_invariance,
        check_set_params,
        check_estimator_cloneable,
        check_estimator_repr,
        check_parameters_default_constructible,
    ):
        check("Generator", g)


def test_clone_never_copies_weights_and_pickle_round_trips():
    g = tiny("high").initialize()
    twin = clone(g)
    assert not hasattr(twin, "module_") and twin.get_params() == g.get_params()
    g.set_params(embed_dim=7)
    assert g.get_params()["embed_dim"] == 7 and twin.embed_dim == 256
    g = tiny("high").initialize()
    loaded = pickle.loads(pickle.dumps(g))
    x, c = torch.randn(3, 12), [1, 2, 3]
    assert torch.equal(loaded.transform(x, c), g.transform(x, c))
    assert loaded.n_frames_ == 24 and loaded.device_ == g.device_ == torch.device("cpu")


@pytest.mark.parametrize(
    ("features", "categories", "message"),
    [
        (np.zeros(12), [0], "2 dimensions"),
        (np.zeros((2, 11)), [0, 1], r"dimension 1 is 11, expected 12"),
        (np.zeros((2, 12)), [0, 6], r"\[0, 6\)"),
        (np.zeros((2, 12)), [0, -1], r"\[0, 6\)"),
        (np.zeros((2, 12)), [0], "1 entries for 2 samples"),
        (np.full((2, 12), np.nan), [0, 1], "NaN"),
    ],
)
def test_bad_inputs_raise_value_errors(features, categories, message):
    g = tiny().initialize()
    with pytest.raises(ValueError, match=message):
        g.transform(features, categories)
    with pytest.raises(ValueError, match=message):
        g.fit(features, np.zeros((len(features), 5, 24)), categories)


def test_none_sizes_mean_the_papers():
    g = Generator(None, in_features=None, emb_width=None, n_categories=None, size="tiny")
    g.set_params(n_frames=8, device="cpu").initialize()
    assert (g.level_, g.in_features_, g.emb_width_, g.n_categories_) == (0, 2048, 64, 6)
    assert g.transform(np.zeros((1, 2048)), [5]).shape == (1, 64, 8)


def test_bad_targets_settings_and_state():
    g = tiny()
    with pytest.raises(NotFittedError):
        g.transform(np.zeros((1, 12)), [0])
    with pytest.raises(ValueError, match=r"latents must have shape \(2, 5, 24\)"):
        g.fit(np.zeros((2, 12)), np.zeros((2, 5, 23)), [0, 1])
    with pytest.raises(ValueError, match="level"):
        tiny("middle").initialize()
    with pytest.raises(ValueError, match="size"):
        tiny(size="huge").initialize()
    with pytest.raises(ValueError, match="n_frames"):
        tiny(n_frames=0).initialize()
    with pytest.raises(ValueError, match="lr"):
        tiny(lr=-1.0).fit(np.zeros((2, 12)), np.zeros((2, 5, 24)), [0, 1])
    module = tiny().initialize().module_
    with pytest.raises(ValueError, match=r"features must have shape \(batch, 12\)"):
        module(torch.zeros(2, 13), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="categories"):
        module(torch.zeros(2, 12), torch.tensor([0]))


def per_category_preactivations(module, x, z):
    """The output layer's pre-tanh output under each category: ``(k, batch, ch, frames)``."""
    rows = []
    for k in range(module.n_categories):
        cats = torch.full((x.shape[0],), k)
        rows.append(module.output_layer()(module._hidden(x, cats, z)))
    return torch.stack(rows)


@pytest.mark.parametrize("level", ["high", "deep"])
def test_guidance_extrapolates_from_the_category_average(level):
    g = tiny(level, noise_dim=3).initialize()
    module = g.module_.eval()
    x, c, z = torch.randn(4, 12), torch.tensor([0, 5, 2, 2]), torch.randn(4, 3)
    with torch.no_grad():
        pre = per_category_preactivations(module, x, z)
        mean, own = pre.mean(0), pre[c, torch.arange(4)]
        for w in (0.0, 1.0, 2.5):
            want = torch.tanh(mean + w * (own - mean)) * 100
            assert torch.allclose(module(x, c, z, w), want, atol=1e-3), w
            assert torch.allclose(module.guided(x, c, z, w), want, atol=1e-3), w
        # At 0 every category gives the same (the average); the noise still counts.
        assert torch.allclose(module(x, c, z, 0.0), module(x, torch.zeros_like(c), z, 0.0))
        assert not torch.allclose(module(x, c, z, 0.0), module(x, c, -z, 0.0))


def test_guidance_draws_one_noise_for_every_category():
    module = tiny("deep", noise_dim=3).initialize().module_.eval()
    x, c = torch.randn(2, 12), torch.tensor([1, 4])
    with torch.no_grad():
        torch.manual_seed(7)
        drawn = module.guided(x, c, None, 2.0)
        torch.manual_seed(7)
        given = module.guided(x, c, torch.randn(2, 3), 2.0)
    assert torch.equal(drawn, given)


def test_transform_applies_guidance_and_one_is_the_plain_output():
    g = tiny("deep", noise_dim=3, batch_size=2).initialize()
    x, c = torch.randn(5, 12), [0, 1, 2, 3, 4]
    plain = g.transform(x, c)
    assert torch.equal(g.set_params(guidance=1).transform(x, c), plain)
    guided = g.set_params(guidance=3.0).transform(x, c)
    with torch.no_grad():
        want = g.module_(x, torch.tensor(c), g.sample_noise(5), 3.0)
    assert torch.allclose(guided, want, atol=1e-4)
    # Stronger guidance moves the output further from the category average.
    average = g.set_params(guidance=0.0).transform(x, c)
    assert (guided - average).abs().mean() > (plain - average).abs().mean() > 0


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), True, "2", None])
def test_bad_guidance_names_the_value(bad):
    g = tiny("deep").initialize().set_params(guidance=bad)
    with pytest.raises(ValueError, match=r"guidance must be a finite number >= 0, got"):
        g.transform(torch.randn(1, 12), [0])
    with pytest.raises(ValueError, match="guidance"):
        g.fit(np.zeros((2, 12), np.float32), np.zeros((2, 5, 24), np.float32), [0, 1])


def test_guidance_passes_through_the_fast_path_wrapper():
    from conchshell.inference import CastModule

    module = tiny("deep", noise_dim=3).initialize().module_.eval()
    x, c, z = torch.randn(2, 12), torch.tensor([3, 0]), torch.randn(2, 3)
    with torch.no_grad():
        wrapped = CastModule(module, torch.float32, None)(x, c, z, 2.0)
        assert torch.equal(wrapped, module(x, c, z, 2.0))


def test_the_estimator_checks_generator_settings_before_any_stage(tmp_path):
    from conchshell import presets
    from conchshell.datasets import make_toy_dataset

    model = presets.conchshell("tiny", checkpoint_dir=str(tmp_path / "ckpt"))
    model.set_params(generator__guidance=-1.0)
    with pytest.raises(ValueError, match=r"guidance must be a finite number >= 0, got -1\.0"):
        model.fit(make_toy_dataset(1, n_samples=16000))
    assert not (tmp_path / "ckpt").exists()
    assert not hasattr(model, "encoder_")
