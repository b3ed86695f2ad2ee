"""The mosaic generator: what it keeps, how it chooses windows, and its place in the estimator.

Issue 19: every network generator's clips decode to a hiss floor on a CPU,
while windows of real latents decode to clean piano. These tests pin that a
mosaic is made of the kept pieces' own windows, follows the category and the
photo, rearranges instead of copying, and saves, loads and optimises like
any generator.
"""

import numpy as np
import pytest
import torch

from conchshell.gan.mosaic import MosaicGenerator

N_FRAMES, WIDTH, N_FEATURES = 24, 3, 5


def pieces(n_per_category=3, n_categories=2, seed=0):
    """Pieces whose every latent vector names its piece, category and frame."""
    rng = np.random.default_rng(seed)
    n = n_per_category * n_categories
    latents = np.zeros((n, WIDTH, N_FRAMES), np.float32)
    for i in range(n):
        latents[i, 0] = i  # piece
        latents[i, 1] = i // n_per_category  # category
        latents[i, 2] = np.arange(N_FRAMES)  # frame
    features = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    categories = np.repeat(np.arange(n_categories), n_per_category)
    return features, latents, categories


def tiny(**params):
    settings = {"level": "high", "n_units": 4, "device": "cpu", "random_state": 0}
    return MosaicGenerator(**{**settings, **params})


def test_fit_keeps_each_piece_once_and_its_distinct_vectors():
    features, latents, categories = pieces()
    # Each piece paired with two photos, as augmented copies are.
    twice = np.concatenate([features, features + 0.1])
    g = tiny().fit(twice, np.concatenate([latents, latents]), np.tile(categories, 2))
    assert g.n_sources_ == 6
    assert g.n_vectors_ == 6 * N_FRAMES  # every frame of every piece differs
    state = g.module_
    assert state.table.shape == (6 * N_FRAMES, WIDTH) and state.index.dtype == torch.int32
    for s in range(6):
        np.testing.assert_array_equal(state.latents(s, 0, N_FRAMES).numpy(), latents[s])
    assert state.categories.tolist() == categories.tolist()
    np.testing.assert_allclose(state.photos.norm(dim=1).numpy(), 1, rtol=1e-6)


def test_a_piece_filed_under_two_categories_is_kept_for_each():
    features, latents, _ = pieces()
    same = np.stack([latents[0]] * 3)  # as an untrained codec's few codes can make them
    g = tiny(n_categories=2).fit(features[:3], same, [0, 1, 1])
    assert g.n_sources_ == 2 and g.module_.categories.tolist() == [0, 1]
    out = g.transform(features[:2], [0, 1])
    assert out.shape == (2, WIDTH, N_FRAMES)


def test_output_is_windows_of_the_category_pieces():
    features, latents, categories = pieces()
    g = tiny().fit(features, latents, categories)
    out = g.transform(np.zeros((8, N_FEATURES), np.float32), [0, 1] * 4).numpy()
    assert out.shape == (8, WIDTH, N_FRAMES) and out.dtype == np.float32
    length = N_FRAMES // 4
    for row, category in zip(out, [0, 1] * 4, strict=True):
        assert (row[1] == category).all()  # only pieces of the asked category
        for w in range(4):
            window = row[:, w * length : (w + 1) * length]
            assert len(set(window[0])) == 1  # one piece per window ...
            frames = window[2]
            # ... taken whole, from one offset, in order.
            np.testing.assert_array_equal(frames, frames[0] + np.arange(length))
            assert frames[0] % length == 0


def test_runs_are_bounded_and_continue_in_order():
    features, latents, categories = pieces()
    length = N_FRAMES // 4
    always = tiny(continue_prob=1.0, max_run=2).fit(features, latents, categories)
    out = always.transform(np.zeros((20, N_FEATURES), np.float32), [0] * 20).numpy()
    for row in out:
        piece = row[0, ::length]
        start = row[2, ::length]
        # The first window is continued unless it is its piece's last ...
        continued = piece[0] == piece[1] and start[1] == start[0] + length
        assert continued or start[0] == 3 * length
        # ... and no run passes two windows.
        run = 1
        for w in range(1, 4):
            continued = piece[w] == piece[w - 1] and start[w] == start[w - 1] + length
            run = run + 1 if continued else 1
            assert run <= 2
    never = tiny(continue_prob=0.0).fit(features, latents, categories)
    out = never.transform(np.zeros((20, N_FEATURES), np.float32), [0] * 20).numpy()
    starts = out[:, 2, ::length]
    assert len({tuple(s) for s in starts}) > 10  # jumps land anywhere


def test_photo_weights_follow_the_nearest_photo():
    features, latents, categories = pieces()
    g = tiny(photo_temperature=0.01, continue_prob=1.0, max_run=4).fit(
        features, latents, categories
    )
    for s in range(6):
        out = g.transform(features[s : s + 1], [categories[s]]).numpy()[0]
        assert set(out[0]) == {s}  # sharp weights: the photo's own piece, only
    loose = tiny(photo_temperature=100.0).fit(features, latents, categories)
    out = loose.transform(np.repeat(features[:1], 30, 0), [0] * 30, loose.sample_noise(30, 1))
    assert set(out[:, 0].numpy().ravel()) == {0, 1, 2}  # flat weights: every piece of it


def test_guidance_prefers_the_windows_typical_of_the_category():
    features, latents, categories = pieces()
    # Piece 2 is filed under category 0 but sounds like category 1's pieces (channel 1).
    latents[2, 1] = 1.0
    flat = {"photo_temperature": 100.0, "join_temperature": 100.0}  # only guidance decides
    g = tiny(n_categories=2, guidance=0.0, continue_prob=0.0, **flat)
    g.fit(features, latents, categories)
    assert 0.5 < g.history_[0]["window_accuracy"] <= 1.0
    log_p = g.module_.window_log_proba(4).reshape(6, 4, 2).numpy()
    np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0)
    # Piece 2's windows are the least typical of category 0.
    assert log_p[2, :, 0].max() < log_p[[0, 1], :, 0].min()
    x, noise = np.zeros((40, N_FEATURES), np.float32), g.sample_noise(40, 1)
    plain = (g.transform(x, [0] * 40, noise)[:, 0].numpy() == 2).mean()
    g.set_params(guidance=3.0)
    guided = (g.transform(x, [0] * 40, noise)[:, 0].numpy() == 2).mean()
    assert plain > 0.2 and guided < plain / 2


def test_window_statistics_are_kept_until_the_state_or_n_units_change():
    features, latents, categories = pieces()
    g = tiny(continue_prob=0.0).fit(features, latents, categories)
    x = np.zeros((6, N_FEATURES), np.float32)
    first = g.transform(x, [0] * 6)
    units = g._units(g.module_)
    assert g._units(g.module_) is units  # computed once
    g.set_params(n_units=2)  # a fitted-settable setting: windows of 12 frames now
    halves = g.transform(x, [0] * 6, g.sample_noise(6)).numpy()
    np.testing.assert_array_equal(halves[:, 2, :12] % 12, np.tile(np.arange(12), (6, 1)))
    g.set_params(n_units=4)
    torch.testing.assert_close(g.transform(x, [0] * 6), first)
    # New contents in the same module (as loading does) are noticed.
    other = tiny().fit(features, latents[::-1].copy(), categories[::-1].copy())
    g.module_.load_state_dict(other.module_.state_dict())
    assert g._units(g.module_) is not units


def test_the_last_window_takes_the_remainder():
    features, latents, categories = pieces()
    g = tiny(n_units=5).fit(features, latents, categories)  # 24 = 4 x 4 + 8
    out = g.transform(np.zeros((6, N_FEATURES), np.float32), [1] * 6).numpy()
    last = out[:, :, 16:]
    for row in last:
        assert len(set(row[0])) == 1
        np.testing.assert_array_equal(row[2], row[2, 0] + np.arange(8))


def test_same_noise_same_latents_and_seeded_rows():
    features, latents, categories = pieces()
    g = tiny().fit(features, latents, categories)
    x = np.zeros((3, N_FEATURES), np.float32)
    torch.testing.assert_close(g.transform(x, [0, 1, 0]), g.transform(x, [0, 1, 0]))
    noise = g.sample_noise(5, seed=3)
    assert noise.shape == (5, 2, 4) and noise.dtype == torch.float64
    torch.testing.assert_close(g.sample_noise(2, seed=3), noise[:2])
    assert not torch.equal(g.sample_noise(2, seed=4), noise[:2])


def test_a_category_without_pieces_draws_from_all():
    features, latents, categories = pieces()
    g = tiny(n_categories=3).fit(features, latents, categories)
    out = g.transform(np.zeros((4, N_FEATURES), np.float32), [2] * 4).numpy()
    assert set(out[:, 0].ravel()) <= set(range(6))


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("n_units", 0, "n_units"),
        ("n_units", 25, "more than the 24 latent frames"),
        ("max_run", 0, "max_run"),
        ("continue_prob", 1.5, "continue_prob must be in"),
        ("photo_temperature", 0, "photo_temperature must be a positive"),
        ("join_temperature", float("inf"), "join_temperature must be a positive"),
        ("guidance", -1, "guidance must be a finite number >= 0"),
    ],
)
def test_bad_settings_name_the_value(param, value, message):
    features, latents, categories = pieces()
    with pytest.raises(ValueError, match=message):
        tiny(**{param: value}).fit(features, latents, categories)


def test_bad_inputs_name_what_is_wrong():
    from sklearn.exceptions import NotFittedError

    features, latents, categories = pieces()
    with pytest.raises(NotFittedError, match="keeps no pieces"):
        tiny(in_features=5, n_categories=2, emb_width=3, n_frames=24).initialize().transform(
            features, categories
        )
    g = tiny().fit(features, latents, categories)
    with pytest.raises(ValueError, match="noise"):
        g.transform(features[:2], [0, 1], torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match=r"noise must lie in \[0, 1\)"):
        g.transform(features[:2], [0, 1], torch.ones(2, 2, 4))
    with pytest.raises(ValueError, match="categor"):
        g.transform(features[:2], [0, 6])  # n_categories is the paper's 6 here
    with pytest.raises(ValueError, match="latents"):
        tiny().fit(features, np.full_like(latents, np.nan), categories)


def test_mosaic_preset_fits_without_training_saves_loads_and_optimizes(tmp_path):
    from conchshell import ImageToMusic, optimize, presets
    from conchshell.datasets import make_toy_dataset

    data = make_toy_dataset(1, n_samples=16000)
    model = presets.mosaic("tiny", random_state=0).fit(data)
    g = model.generator_
    assert type(g).__name__ == "MosaicGenerator"
    assert model.history_ == []  # no adversarial stage
    # The estimator hands it latents snapped to the codebook: at most its size of vectors.
    assert g.n_vectors_ <= model.codec_.l_bins
    table = g.module_.table
    codebook = model.codec_.module_.bottleneck.level_blocks[model.level_].k
    assert (table[:, None] == codebook[None]).all(-1).any(1).all()  # each row is a code's
    images = data.stack_images()[:3]
    clips = model.predict(images)
    assert clips.shape == (3, 16000) and np.isfinite(clips).all()
    model.save(tmp_path / "m")
    loaded = ImageToMusic.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(images), clips)
    np.testing.assert_allclose(optimize(model, precision="float32").predict(images), clips)
    fast = optimize(model, precision="bfloat16")
    assert fast.generator_.module_.table.dtype == torch.float32  # not cast: it is no network
    torch.testing.assert_close(
        fast.predict_latents(images), model.predict_latents(images), rtol=0, atol=0
    )


def test_mosaic_preset_refuses_adversarial_steps():
    from conchshell import presets
    from conchshell.datasets import make_toy_dataset

    with pytest.raises(ValueError, match="set max_steps=0"):
        presets.mosaic("tiny", max_steps=3).fit(make_toy_dataset(1, n_samples=16000))
