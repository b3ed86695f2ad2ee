"""Musical descriptors, their per-category profile, the relevance classifier and scorers."""

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import RidgeClassifier
from sklearn.utils.estimator_checks import (
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from conchshell.evaluation import (
    DESCRIPTORS,
    METRICS,
    DescriptorProfile,
    RelevanceClassifier,
    describe,
    descriptor_agreement,
    estimate_key,
    estimate_loudness,
    estimate_register,
    estimate_tempo,
    evaluate_audio,
    make_audio_scorer,
    paired_retrieval,
    relevance_accuracy,
)
from conchshell.evaluation.descriptors import LOUDNESS_FLOOR

SR = 16000
SECONDS = 2.5


def tone(midi: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return np.sin(2 * np.pi * 440 * 2 ** ((midi - 69) / 12) * t)


def chord(midis, seconds: float = 1.0) -> np.ndarray:
    return sum(tone(m, seconds) for m in midis) / len(midis)


def piano(tonic: int, minor: bool, bpm: float, amp: float, seed: int = 0) -> np.ndarray:
    """Arpeggiated triad of piano-like notes (decaying harmonics), one note per beat."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * SR)) / SR
    triad = (0, 3 if minor else 4, 7, 12)
    out = np.zeros_like(t)
    beat = 60 / bpm
    for i, start in enumerate(np.arange(0.05, SECONDS, beat)):
        f = 440 * 2 ** ((tonic + triad[i % 4] - 69 + 0.1 * rng.normal()) / 12)
        local = t[t >= start] - start
        note = sum(np.sin(2 * np.pi * k * f * local) / k for k in (1, 2, 3))
        out[t >= start] += note * np.exp(-3 * local)
    out += 0.002 * rng.normal(size=t.shape)
    return (amp * out / np.abs(out).max()).astype(np.float32)


# Three synthetic "scene" categories: bright/fast/major/loud, dark/slow/minor/soft, mid.
CATEGORY_STYLE = {
    0: dict(tonic=72, minor=False, bpm=150, amp=0.9),
    1: dict(tonic=45, minor=True, bpm=70, amp=0.15),
    2: dict(tonic=60, minor=True, bpm=110, amp=0.4),
}


def category_clips(n_per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    clips, labels = [], []
    for c, style in CATEGORY_STYLE.items():
        for i in range(n_per):
            jitter = dict(style, bpm=style["bpm"] * (1 + 0.05 * (i - n_per / 2) / n_per))
            clips.append(piano(**jitter, seed=seed * 100 + 10 * c + i))
            labels.append(c)
    return np.stack(clips), np.array(labels)


@pytest.fixture(scope="module")
def train():
    return category_clips(3, seed=0)


@pytest.fixture(scope="module")
def held_out():
    return category_clips(2, seed=1)


@pytest.fixture(scope="module")
def clf(train):
    return RelevanceClassifier().fit(*train)


@pytest.fixture(scope="module")
def profile(train):
    return DescriptorProfile().fit(*train)


# --- descriptors ----------------------------------------------------------------------


def test_mode_major_and_minor_chords():
    keys = estimate_key(np.stack([chord((60, 64, 67)), chord((60, 63, 67)), chord((57, 60, 64))]))
    assert [(k[0], k[1]) for k in keys] == [("C", "major"), ("C", "minor"), ("A", "minor")]
    assert keys[0][2] > 0 > keys[1][2]


def test_tempo_of_click_tracks():
    t = np.arange(4 * SR) / SR
    blip = lambda x: np.sin(2 * np.pi * 1000 * x) * np.exp(-50 * x)  # noqa: E731
    tracks = [
        sum(blip(np.clip(t - s, 0, None)) * (t >= s) for s in np.arange(0.1, 4, 60 / bpm))
        for bpm in (120, 90)
    ]
    np.testing.assert_allclose(estimate_tempo(np.stack(tracks)), [120, 90], atol=2.5)


def test_register_of_tones():
    np.testing.assert_array_equal(
        estimate_register(np.stack([tone(69), tone(48), tone(84)])), [69, 48, 84]
    )


def test_loudness_drops_6_db_when_amplitude_halves():
    x = piano(60, False, 120, 0.8)
    full, half, silent = estimate_loudness(np.stack([x, x / 2, np.zeros_like(x)]))
    assert full - half == pytest.approx(20 * np.log10(2), abs=0.01)
    assert silent == LOUDNESS_FLOOR
    assert estimate_loudness(torch.from_numpy(x))[0] == pytest.approx(full)


def test_describe_columns_and_silence():
    d = describe(np.stack([piano(60, False, 120, 0.5), np.zeros(int(SECONDS * SR))]))
    assert d.shape == (2, len(DESCRIPTORS)) and DESCRIPTORS == (
        "tempo",
        "register",
        "loudness",
        "mode",
    )
    assert 110 < d[0, 0] < 130 and 55 < d[0, 1] < 80 and d[0, 3] > 0
    assert np.isnan(d[1, [0, 1, 3]]).all() and d[1, 2] == LOUDNESS_FLOOR


def test_descriptor_input_errors():
    with pytest.raises(ValueError, match="at least 8000"):
        estimate_tempo(np.zeros(100))
    with pytest.raises(TypeError, match="sample_rate"):
        estimate_loudness(np.zeros(SR), sample_rate=16000.0)
    with pytest.raises(ValueError, match="8500"):
        estimate_register(np.zeros(SR), sample_rate=8000)


# --- descriptor profile ---------------------------------------------------------------


def test_profile_precomputed():
    d = np.array(
        [[90, 60, -20, 0.3], [92, 61, -21, 0.2], [140, 72, -12, -0.3], [138, 71, -13, -0.2]]
    )
    p = DescriptorProfile(precomputed=True).fit(d, ["calm", "calm", "storm", "storm"])
    np.testing.assert_allclose(p.means_, [[91, 60.5, -20.5, 0.25], [139, 71.5, -12.5, -0.25]])
    # spreads are floored at 5 BPM, 1 semitone, 1 LU, 0.05
    np.testing.assert_allclose(p.scales_, [[5, 1, 1, 0.05], [5, 1, 1, 0.05]])
    assert p.predict([[91, 60, -20, 0.25], [139, 72, -12, -0.2]]).tolist() == ["calm", "storm"]
    np.testing.assert_allclose(p.zscores([[101, 60.5, -20.5, 0.25]], ["calm"]), [[2, 0, 0, 0]])
    assert p.score(d, ["calm", "calm", "storm", "storm"]) == 1.0
    assert p.score(d, ["storm", "storm", "calm", "calm"]) == 0.0
    with pytest.raises(ValueError, match="not seen in fit"):
        p.zscores(d[:1], ["desert"])
    with pytest.raises(ValueError, match="shape"):
        p.fit(d[:, :3], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="at least 2 categories"):
        DescriptorProfile(precomputed=True).fit(d, [0, 0, 0, 0])
    with pytest.raises(ValueError, match="min_scale"):
        DescriptorProfile(precomputed=True, min_scale=(1, 1, 1)).fit(d, [0, 0, 1, 1])


def test_profile_real_clips_agree_noise_does_not(profile, held_out):
    clips, labels = held_out
    report = profile.report(clips, labels)
    assert report["descriptor_agreement"] == 1.0
    assert set(report) == {"descriptor_agreement", "abs_z_mean"} | {
        f"abs_z_{n}" for n in DESCRIPTORS
    }
    rng = np.random.default_rng(4)
    noise = 0.3 * rng.normal(size=clips.shape).astype(np.float32)
    noisy = profile.report(noise, labels)
    assert noisy["descriptor_agreement"] < 0.7
    assert noisy["abs_z_mean"] > 2 * report["abs_z_mean"]
    assert descriptor_agreement(labels, clips, profile=profile) == 1.0


# --- relevance classifier -------------------------------------------------------------


def test_relevance_classifier_separates_categories(clf, held_out):
    clips, labels = held_out
    assert clf.classes_.tolist() == [0, 1, 2]
    assert clf.n_features_ == 2 * 64 + 12
    assert clf.score(clips, labels) == 1.0
    assert relevance_accuracy(labels, clips, classifier=clf) == 1.0
    assert relevance_accuracy(np.roll(labels, 2), clips, classifier=clf) == 0.0
    proba = clf.predict_proba(clips)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert clf.transform(clips).shape == (len(clips), clf.n_features_)


def test_relevance_classifier_options(train, held_out):
    model = RelevanceClassifier(features="chroma", classifier=RidgeClassifier()).fit(*train)
    assert model.n_features_ == 12 and isinstance(model.classifier_, RidgeClassifier)
    by_descriptors = RelevanceClassifier(features=("descriptors",)).fit(*held_out)
    assert by_descriptors.n_features_ == 4
    assert by_descriptors.score(*held_out) == 1.0
    with pytest.raises(ValueError, match="features"):
        RelevanceClassifier(features=("mfcc",)).fit(*train)
    with pytest.raises(ValueError, match="n_mels"):
        RelevanceClassifier(n_mels=0).fit(*train)
    with pytest.raises(ValueError, match="entries"):
        RelevanceClassifier().fit(train[0], train[1][:-1])


def test_paired_retrieval(clf, held_out):
    clips, _ = held_out
    assert paired_retrieval(clips, clips, classifier=clf) == 1.0
    # each clip paired with the other's reference: it always sits on the wrong one
    assert paired_retrieval(clips[[0, 2]], clips[[2, 0]], classifier=clf) == 0.0
    # shuffled pairs fall below chance (0.5)
    assert paired_retrieval(clips, np.roll(clips, 2, axis=0), classifier=clf) < 0.5
    # a shared reference is no competitor: pairs 0 and 1 have the same music
    shared = clips.copy()
    shared[1] = shared[0]
    assert paired_retrieval(shared, shared, classifier=clf) == 1.0
    assert np.isnan(paired_retrieval(np.stack([clips[0]] * 2), clips[:2], classifier=clf))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_retrieval(clips[:1], clips[:1], classifier=clf)


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
@pytest.mark.parametrize("estimator", [RelevanceClassifier(), DescriptorProfile()])
def test_sklearn_api(estimator, check):
    check(type(estimator).__name__, estimator)


def test_fitted_objects_clone_unfitted(clf):
    fresh = clone(clf)
    assert not hasattr(fresh, "classes_") and fresh.get_params() == clf.get_params()


# --- scorers --------------------------------------------------------------------------


class Replay(BaseEstimator):
    """A stand-in generator: predict(indices) returns the stored clips at those indices."""

    def __init__(self, clips=None):
        self.clips = clips

    def predict(self, X):
        return self.clips[np.asarray(X)]


def test_scorers_on_a_generator(clf, profile, held_out):
    clips, labels = held_out
    idx = np.arange(len(clips))
    perfect, noisy = (
        Replay(clips),
        Replay(clips + 0.2 * np.random.default_rng(5).normal(size=clips.shape)),
    )
    mrstft = make_audio_scorer("mrstft")
    assert mrstft(perfect, idx, clips) == 0.0  # negated distance: 0 is the best
    assert mrstft(noisy, idx, clips) < -1.0
    hit = make_audio_scorer("beat_hit", tolerance=0.05)
    assert hit(perfect, idx, clips) == 1.0
    relevance = make_audio_scorer("relevance_accuracy", classifier=clf)
    assert relevance(perfect, idx, labels) == 1.0
    agreement = make_audio_scorer("descriptor_agreement", profile=profile)
    assert agreement(perfect, idx, labels) == 1.0
    distance = make_audio_scorer("descriptor_distance", profile=profile)
    assert distance(perfect, idx, labels) > distance(noisy, idx, labels)
    with pytest.raises(ValueError, match="needs classifier"):
        make_audio_scorer("paired_retrieval")
    with pytest.raises(ValueError, match="unknown metric"):
        make_audio_scorer("fad")


def test_evaluate_audio_reports_what_inputs_allow(clf, profile, held_out):
    clips, labels = held_out
    # no categories and no fitted models: only the paired signal metrics apply
    skipped = evaluate_audio(
        clips, clips, metrics=["mrstft", "relevance_accuracy", "paired_retrieval"]
    )
    assert skipped == {"mrstft": 0.0}
    assert evaluate_audio(None, clips, labels, profile=profile, metrics=["mrstft"]) == {}
    full = evaluate_audio(clips, clips, labels, classifier=clf, profile=profile)
    expected = set(METRICS) - {"visqol"} | {f"abs_z_{n}" for n in DESCRIPTORS} | {"abs_z_mean"}
    assert set(full) == expected
    assert full["relevance_accuracy"] == 1.0 and full["paired_retrieval"] == 1.0
    assert full["descriptor_agreement"] == 1.0 and full["descriptor_distance"] == full["abs_z_mean"]
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_audio(clips, clips, metrics=["pesq"])


# --- real clips of a dataset ----------------------------------------------------------


def test_real_clips_counts_each_piece_once(tmp_path):
    import soundfile as sf
    from PIL import Image

    from conchshell.datasets import MusicImageDataset, make_toy_dataset
    from conchshell.evaluation import real_clips

    for name, midi in (("a.wav", 60), ("b.wav", 72)):
        sf.write(tmp_path / name, 0.5 * tone(midi), SR)
    for k in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{k}.png")
    images = [tmp_path / f"{k}.png" for k in range(3)]
    ds = MusicImageDataset(
        images,
        [tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "a.wav"],
        [0, 1, 0],
        ["x", "y"],
        duration=1.0,
    )
    waves, cats, keys = real_clips(ds)
    assert waves.shape == (2, SR) and cats.tolist() == [0, 1]
    assert [Path(k).name for k in keys] == ["a.wav", "b.wav"]
    assert real_clips(ds, distinct=False)[0].shape == (3, SR)
    mixed = MusicImageDataset(
        images[:2], [tmp_path / "a.wav"] * 2, [0, 1], ["x", "y"], duration=1.0
    )
    with pytest.warns(UserWarning, match="several categories"):
        assert real_clips(mixed)[1].tolist() == [0]
    toy = make_toy_dataset(n_per_category=1, n_categories=2, n_samples=SR)
    waves, cats, keys = real_clips(toy)
    assert waves.shape == (2, SR) and cats.tolist() == [0, 1] and keys == [0, 1]


class NearestReference(BaseEstimator):
    """A stand-in generator that answers each image id with the training clip of the nearest id."""

    def fit(self, X, y):
        self.ids_, self.clips_ = np.asarray(X), np.asarray(y)
        return self

    def predict(self, X):
        nearest = np.abs(np.asarray(X)[:, None] - self.ids_[None]).argmin(1)
        return self.clips_[nearest]


def test_scorers_in_cross_validate(held_out):
    from sklearn.model_selection import cross_validate

    clips, _ = held_out
    ids = np.arange(len(clips))
    scoring = {"mrstft": make_audio_scorer("mrstft"), "beat_hit": make_audio_scorer("beat_hit")}
    result = cross_validate(NearestReference(), ids, clips, scoring=scoring, cv=2)
    # every test clip is answered with another clip, so the distance is never 0
    assert result["test_mrstft"].shape == (2,) and (result["test_mrstft"] < 0).all()
    assert ((result["test_beat_hit"] >= 0) & (result["test_beat_hit"] <= 1)).all()
