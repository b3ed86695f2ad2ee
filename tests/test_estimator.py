"""ImageToMusic end to end on tiny components: fit, predict, save/load, resume, errors."""

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from conchshell import presets
from conchshell.datasets import make_toy_dataset
from conchshell.estimator import ImageToMusic

pytestmark = pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning")


@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset(n_per_category=1, n_categories=6, n_samples=16000, random_state=0)


def tiny(**params):
    params.setdefault("level", "high")
    return presets.conchshell("tiny", random_state=0, verbose=0, **params)


@pytest.fixture(scope="module")
def fitted(toy):
    return tiny().fit(toy)


def test_fit_predict_shapes_and_history(fitted, toy):
    clips = fitted.predict(toy.stack_images()[:3])
    assert clips.shape == (3, 16000)  # the tiny preset makes 1-s clips
    assert clips.dtype == np.float32
    assert np.isfinite(clips).all()
    assert len(fitted.history_) == 2
    first = fitted.history_[0]
    assert {"d_hinge", "d_total", "g_adv", "g_fm", "g_wave", "g_mel", "g_total"} <= set(first)
    assert all(np.isfinite(first[k]) for k in ("d_total", "g_total"))
    assert fitted.categories_ == list(toy.categories)
    assert fitted.level_ == 2


def test_predict_is_deterministic_and_batch_independent(fitted, toy):
    images = toy.stack_images()[:3]
    a = fitted.predict(images, batch_size=1)
    b = fitted.predict(images, batch_size=3)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_fit_is_reproducible_for_a_random_state(fitted, toy):
    again = tiny().fit(toy)
    for key in ("g_total", "d_total"):
        assert again.history_[-1][key] == pytest.approx(fitted.history_[-1][key], rel=1e-5)
    images = toy.stack_images()[:2]
    np.testing.assert_allclose(again.predict(images), fitted.predict(images), atol=1e-5)


def test_categories_steer_the_generator(fitted, toy):
    image = toy.stack_images()[:1]
    by_id = fitted.predict_latents(image, categories=[0])
    other = fitted.predict_latents(image, categories=[5])
    assert not torch.allclose(by_id, other)
    by_name = fitted.predict(image, categories=[toy.categories[0]])
    np.testing.assert_allclose(by_name, fitted.predict(image, categories=[0]), atol=1e-6)
    with pytest.raises(ValueError, match="unknown category 'volcano'"):
        fitted.predict(image, categories=["volcano"])
    with pytest.raises(ValueError, match=r"must lie in \[0, 6\)"):
        fitted.predict(image, categories=[9])


def test_save_load_gives_identical_predictions(fitted, toy, tmp_path):
    fitted.save(tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["history.json", "model.safetensors", "params.json"]
    meta = json.loads((tmp_path / "model" / "params.json").read_text())
    assert meta["library"] == "conchshell" and meta["level"] == 2
    loaded = ImageToMusic.load(tmp_path / "model")
    images = toy.stack_images()[:2]
    np.testing.assert_array_equal(loaded.predict(images), fitted.predict(images))
    assert loaded.get_params(deep=True).keys() == fitted.get_params(deep=True).keys()
    assert loaded.history_ == json.loads(json.dumps(fitted.history_))


def test_pickle_roundtrip(fitted, toy):
    back = pickle.loads(pickle.dumps(fitted))
    images = toy.stack_images()[:1]
    np.testing.assert_array_equal(back.predict(images), fitted.predict(images))


def test_load_refuses_foreign_classes(fitted, tmp_path):
    folder = fitted.save(tmp_path / "model")
    meta = json.loads((folder / "params.json").read_text())
    meta["estimator"]["class"] = "os.system"
    (folder / "params.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not a conchshell component class"):
        ImageToMusic.load(folder)
    with pytest.raises(FileNotFoundError, match="holds no conchshell model"):
        ImageToMusic.load(tmp_path / "nothing")


def test_generate_files_writes_wav_and_image(fitted, toy, tmp_path):
    written = fitted.generate_files(toy.stack_images()[:2], tmp_path / "out", names=["a", "b"])
    assert [p.name for p in written] == ["a.wav", "b.wav"]
    import soundfile as sf

    audio, rate = sf.read(written[0])
    assert rate == 16000 and audio.shape == (16000,)
    assert (tmp_path / "out" / "a.png").is_file()


def test_nested_params_and_clone():
    model = presets.conchshell("tiny")
    params = model.get_params(deep=True)
    for key in ("encoder__n_blocks", "generator__embed_dim", "loss__mel", "codec__emb_width"):
        assert key in params
    model.set_params(loss__mel=20.0, encoder__n_blocks=18)
    assert model.loss.mel == 20.0 and model.encoder.n_blocks == 18
    copy = clone(model)
    assert copy.get_params()["loss__mel"] == 20.0
    assert copy.loss is not model.loss


def test_level_is_said_once(toy):
    from conchshell.gan.generator import Generator

    model = tiny(generator__level="low")
    with pytest.raises(ValueError, match="configured for level 'low' but the estimator"):
        model.fit(toy)
    assert isinstance(model.generator, Generator)


def test_fitted_model_asked_for_another_level(fitted, toy):
    model = clone(fitted)
    model.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    model.set_params(level="deep")
    with pytest.raises(ValueError, match="fitted for level 'high'"):
        model.predict(toy.stack_images()[:1])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"batch_size": 0},
            r"'batch_size' parameter of ImageToMusic must be an int in the range \[1, inf\)",
        ),
        (
            {"lr_g": -1.0},
            r"'lr_g' parameter of ImageToMusic must be a float in the range \(0\.0, inf\)",
        ),
        ({"betas": (0.5,)}, "betas must be two numbers"),
        ({"level": "middle"}, "'level' parameter of ImageToMusic must be a str among"),
        (
            {"duration": 0},
            r"'duration' parameter of ImageToMusic must be a float in the range \(0\.0, 60\.0\]",
        ),
        ({"encoder": torch.nn.Linear(2, 2)}, "encoder must be a conchshell component"),
    ],
)
def test_bad_params_are_named(toy, params, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tiny(**params).fit(toy)


def test_bad_inputs_to_fit_and_predict(fitted, toy):
    with pytest.raises(ValueError, match="empty"):
        tiny().fit(toy.subset([]))
    with pytest.raises(ValueError, match="224"):
        fitted.predict(torch.zeros(1, 3, 100, 100))
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        tiny().fit(toy, resume=True)
    with pytest.raises(Exception, match="not fitted"):
        tiny().predict(toy.stack_images()[:1])


def test_resume_continues_an_interrupted_fit(toy, tmp_path):
    full = tiny(max_steps=4, checkpoint_dir=tmp_path / "full").fit(toy)
    part = tiny(max_steps=2, checkpoint_dir=tmp_path / "part").fit(toy)
    assert (tmp_path / "part" / "stages.safetensors").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        resumed = tiny(max_steps=4, checkpoint_dir=tmp_path / "part").fit(toy, resume=True)
    assert [h["step"] for h in resumed.history_] == [1, 2, 3, 4]
    assert resumed.history_[:2] == json.loads(json.dumps(part.history_))
    for a, b in zip(full.history_, resumed.history_, strict=True):
        assert a["g_total"] == pytest.approx(b["g_total"], rel=1e-5)
    for name, tensor in full.generator_.module_.state_dict().items():
        torch.testing.assert_close(resumed.generator_.module_.state_dict()[name], tensor)


def test_damaged_latest_checkpoint_falls_back(toy, tmp_path):
    tiny(max_steps=2, checkpoint_dir=tmp_path).fit(toy)
    latest = sorted(tmp_path.glob("step-*.safetensors"))[-1]
    latest.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="is damaged"):
        resumed = tiny(max_steps=3, checkpoint_dir=tmp_path).fit(toy, resume=True)
    assert [h["step"] for h in resumed.history_] == [1, 2, 3]


def test_initialize_builds_an_untrained_model_that_predicts(toy):
    model = presets.conchshell("tiny", level="deep", random_state=0).initialize()
    assert model.categories_[0] == "coast" and model.level_ == 0
    assert not model.history_
    clips = model.predict(toy.stack_images()[:1])
    assert clips.shape == (1, 16000)
    assert model.generator_.module_(
        torch.zeros(1, model.generator_.in_features_), torch.zeros(1, dtype=torch.long)
    ).shape == (1, 16, model.codec_.latent_length(16000, "deep"))


def test_bfloat16_precision_stays_close_to_float32(fitted, toy):
    images = toy.stack_images()[:2]
    reference = fitted.predict(images)
    fast = clone(fitted)
    fast.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    fast.set_params(precision="bfloat16")
    approx = fast.predict(images)
    assert approx.shape == reference.shape and np.isfinite(approx).all()
    assert np.abs(approx - reference).mean() < 0.1 * np.abs(reference).mean() + 1e-3


def test_warm_start_regresses_the_generator_first(toy):
    model = tiny(warm_start_steps=3, max_steps=1).fit(toy)
    assert model.generator_.history_ and model.generator_.history_[-1]["step"] == 3


def test_warm_start_steps_are_not_cut_by_the_generators_epochs(toy):
    # The generator's max_epochs (here 1) must not stop the warm start before its steps.
    per_epoch = -(-len(toy) // 8)
    model = tiny(warm_start_steps=2 * per_epoch + 1, max_steps=1, generator__max_epochs=1)
    model.fit(toy)
    assert model.generator_.history_[-1]["step"] == 2 * per_epoch + 1
    assert len(model.generator_.history_) == 3


def test_max_time_stops_the_gan_stage_early(toy, tmp_path):
    model = tiny(max_steps=50, max_time=1e-6, checkpoint_dir=tmp_path).fit(toy)
    assert [h["step"] for h in model.history_] == [1]
    assert [p.name for p in tmp_path.glob("step-*")] == ["step-000000001.safetensors"]


def test_image_groups_keep_augmented_copies_together(tmp_path):
    from types import SimpleNamespace

    from conchshell.data.dataset import photo_groups as _image_groups

    names = ("a.jpg", "a-1.jpg", "a-5.jpg", "b.jpg")
    dataset = SimpleNamespace(image_paths=[tmp_path / "coast-1" / n for n in names])
    groups = _image_groups(dataset)
    assert groups.tolist() == ["coast-1/a", "coast-1/a", "coast-1/a", "coast-1/b"]
    assert _image_groups(make_toy_dataset(n_per_category=1, n_samples=1600)) is None


def test_predict_runs_the_encoder_once_per_image(fitted, toy):
    images = toy.stack_images()[:3]
    module = fitted.encoder_.module_
    calls = []
    original = module.forward_features

    def counted(batch):
        calls.append(batch.shape[0])
        return original(batch)

    module.forward_features = counted
    try:
        clips = fitted.predict(images)
        assert calls == [3]  # maps and category from the same pass
        chosen = fitted.predict_categories(images)
        np.testing.assert_array_equal(clips, fitted.predict(images, categories=chosen))
    finally:
        del module.forward_features


def test_a_frozen_fitted_component_is_used_as_it_is(toy, tmp_path, monkeypatch):
    from sklearn.frozen import FrozenEstimator

    from conchshell.image.tcnn import TCNNEncoder

    encoder = tiny().encoder.fit(toy.stack_images(), toy.category_ids)
    weights = {k: v.clone() for k, v in encoder.module_.state_dict().items()}
    history = [dict(h) for h in encoder.history_]
    fits = []
    original_fit = TCNNEncoder.fit
    monkeypatch.setattr(
        TCNNEncoder, "fit", lambda self, *a, **k: fits.append(self) or original_fit(self, *a, **k)
    )
    frozen = FrozenEstimator(encoder)
    models = [tiny(encoder=frozen).fit(toy), clone(tiny(encoder=frozen)).fit(toy)]
    assert fits == []  # the image stage never ran
    for model in models:
        assert model.encoder_ is encoder
        assert model.get_params()["encoder"] is frozen  # clone keeps the frozen instance
    state = encoder.module_.state_dict()
    assert all(torch.equal(weights[k], state[k]) for k in weights)
    assert encoder.history_ == history
    # An unfrozen encoder is cloned and trained, as scikit-learn meta-estimators do.
    assert tiny(encoder=encoder).fit(toy).encoder_ is not encoder
    assert len(fits) == 1
    # Saved and loaded, the model keeps it frozen.
    loaded = ImageToMusic.load(models[0].save(tmp_path / "frozen"))
    assert isinstance(loaded.get_params()["encoder"], FrozenEstimator)
    images = toy.stack_images()[:2]
    np.testing.assert_allclose(loaded.predict(images), models[0].predict(images), atol=1e-5)


def test_an_unfitted_frozen_component_is_refused(toy):
    from sklearn.frozen import FrozenEstimator

    with pytest.raises(ValueError, match="encoder is wrapped in FrozenEstimator but is not fitted"):
        tiny(encoder=FrozenEstimator(tiny().encoder)).fit(toy)


def test_generator_sizes_are_fitted_attributes_not_parameters(fitted):
    # The sizes the data implied are learned (in_features_, ...); the parameters stay unset.
    params = fitted.generator_.get_params()
    assert params["in_features"] is None and params["n_categories"] is None
    assert fitted.generator_.n_categories_ == 6
    assert fitted.generator_.in_features_ == fitted.extractor_.n_features_out_


def test_set_fitted_params_changes_prediction_and_survives_saving(fitted, toy, tmp_path):
    model = ImageToMusic.load(fitted.save(tmp_path / "copy"))
    images = toy.stack_images()[:2]
    before = model.predict(images, seed=0)
    model.set_fitted_params(generator__guidance=3.0)
    assert model.generator_.guidance == 3.0 and model.get_params()["generator__guidance"] == 3.0
    after = model.predict(images, seed=0)
    assert not np.allclose(after, before)
    loaded = type(model).load(model.save(tmp_path / "m"))
    assert loaded.generator_.guidance == 3.0
    np.testing.assert_allclose(loaded.predict(images, seed=0), after, atol=1e-5)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"guidance": 2.0}, "'guidance' names no fitted component"),
        ({"nothing__guidance": 2.0}, "'nothing__guidance' names no fitted component"),
        ({"generator__bogus": 2.0}, r"generator__bogus cannot change on a fitted Generator"),
        ({"generator__noise_dim": 4}, r"what can: \['guidance', 'batch_size', 'verbose'\]"),
        ({"codec__lr": 0.1}, r"codec__lr cannot change on a fitted JukeboxCodec; what can: no"),
        ({"generator__guidance": -2.0}, r"guidance must be a finite number >= 0, got -2\.0"),
    ],
)
def test_set_fitted_params_refuses_bad_keys_and_values_untouched(fitted, params, message):
    before = fitted.generator_.get_params()
    with pytest.raises(ValueError, match=message):
        fitted.set_fitted_params(generator__batch_size=3, **params)
    assert fitted.generator_.get_params() == before
