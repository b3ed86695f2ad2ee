"""TCNNEncoder: exact sizes, block maps, training, weights files and input checks."""

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch.nn import functional as F

import conchshell
from conchshell.image.tcnn import ARCHITECTURES, TCNN, TCNNEncoder
from conchshell.profile import profile

ONE_IMAGE = torch.zeros(1, 3, 224, 224)


def _toy(n_per_class=3, n_classes=2, seed=0):
    """Images whose class is their dominant colour channel: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    x = 0.5 * torch.randn(len(y), 3, 224, 224, generator=g)
    x[torch.arange(len(y)), y] += 2.0
    return x, y


def test_tcnn6_exact_parameters_and_macs():
    enc = TCNNEncoder(device="cpu", random_state=0).initialize()
    p = profile(enc.module_, ONE_IMAGE)
    assert p.params == 2_284_686
    assert p.macs == 827_507_200
    assert enc.n_parameters() == 2_284_686


def test_tcnn18_within_one_percent_of_table1():
    enc = TCNNEncoder(n_blocks=18, device="cpu", random_state=0).initialize()
    p = profile(enc.module_, ONE_IMAGE)
    assert len(enc.module_.blocks) == 18
    assert sum(1 for _, kind, _ in p.layers if kind == "Conv2d") == 18
    assert abs(p.params / 7.543e6 - 1) < 0.01
    assert abs(p.macs / 1.443e9 - 1) < 0.01
    # The figures the module docstring documents.
    assert (p.params, p.macs) == (7_539_758, 1_445_571_072)


def test_alias_and_lazy_export():
    assert TCNN is TCNNEncoder
    assert conchshell.TCNN is TCNNEncoder
    assert conchshell.TCNNEncoder is TCNNEncoder


@pytest.mark.parametrize(
    ("n_blocks", "sides"),
    [
        (6, [224, 112, 56, 28, 14, 7]),
        (18, [224] * 3 + [112] * 2 + [56] * 3 + [28] * 5 + [14] * 3 + [7] * 2),
    ],
)
def test_transform_returns_every_block_before_pooling(n_blocks, sides):
    enc = TCNNEncoder(n_blocks=n_blocks, device="cpu", random_state=0, batch_size=1).initialize()
    images = torch.randn(2, 3, 224, 224)
    maps = enc.transform(images)
    assert len(maps) == n_blocks
    channels = [b.out_channels for b in ARCHITECTURES[n_blocks]]
    assert [tuple(m.shape) for m in maps] == [
        (2, c, s, s) for c, s in zip(channels, sides, strict=True)
    ]
    assert all(bool((m >= 0).all()) for m in maps)  # after the ReLU
    assert not any(m.requires_grad for m in maps)
    # Batching does not change the result, and the maps belong to the classification pass.
    with torch.no_grad():
        logits, ref = enc.module_.forward_features(images)
    for got, want in zip(maps, ref, strict=True):
        torch.testing.assert_close(got, want)
    np.testing.assert_allclose(
        enc.predict_proba(images), torch.softmax(logits, 1).numpy(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.slow
def test_fit_learns_and_records_history():
    x, y = _toy()
    # The plain recipe (the cpu preset's): the default one regularises for 60 epochs of
    # real photos, and its mixup keeps 6 images at 0.5 accuracy after 8 epochs.
    enc = TCNNEncoder(
        max_epochs=8,
        batch_size=2,
        lr=3e-4,
        lr_schedule="constant",
        weight_decay=1e-2,
        label_smoothing=0.0,
        mixup=0.0,
        validation_fraction=0,
        augment=False,
        mixed_precision=True,
        device="cpu",
        random_state=0,
    ).fit(x, y)
    assert enc.score(x, y) == 1.0
    np.testing.assert_array_equal(enc.classes_, np.arange(6))
    assert len(enc.history_) == 8 and enc.best_epoch_ == 8
    assert set(enc.history_[0]) == {
        "epoch",
        "lr",
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_accuracy",
        "seconds",
        "n_skipped",
    }
    assert math.isnan(enc.history_[0]["valid_loss"])
    assert enc.history_[-1]["train_loss"] < 0.05 * enc.history_[0]["train_loss"]
    proba = enc.predict_proba(x)
    assert proba.shape == (6, 6) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert enc.predict(x).dtype.kind == "i"
    assert not enc.module_.training


def test_early_stopping_restores_the_best_epoch():
    x, y = _toy(n_per_class=3, n_classes=2)
    enc = TCNNEncoder(
        max_epochs=4,
        lr=3e-3,
        batch_size=3,
        validation_fraction=0.5,
        patience=1,
        mixed_precision=True,
        device="cpu",
        random_state=1,
    ).fit(x, y)
    losses = [h["valid_loss"] for h in enc.history_]
    best = int(np.argmin(losses))
    assert enc.best_epoch_ == best + 1
    assert len(enc.history_) == min(4, enc.best_epoch_ + 1)
    # The kept weights are the best epoch's: recompute its validation loss.
    _, valid = enc._split(y.numpy(), None, np.random.RandomState(enc.seed_))
    assert len(valid) == 3 and sorted(set(y[valid].tolist())) == [0, 1]  # stratified
    logits = enc._logits(x[valid])
    assert float(F.cross_entropy(logits, y[valid])) == pytest.approx(losses[best], rel=1e-4)


def test_fit_is_reproducible_for_a_random_state():
    x, y = _toy(n_per_class=2)
    kwargs = dict(max_epochs=2, batch_size=2, device="cpu", validation_fraction=0.5)
    a = TCNNEncoder(random_state=3, **kwargs).fit(x, y)
    b = TCNNEncoder(random_state=3, **kwargs).fit(x, y)
    c = TCNNEncoder(random_state=4, **kwargs).fit(x, y)
    state_a, state_b = a.module_.state_dict(), b.module_.state_dict()
    for name, value in state_a.items():
        torch.testing.assert_close(value, state_b[name], msg=name)
    assert not torch.equal(a.module_.blocks[0][0].weight, c.module_.blocks[0][0].weight)
    assert a.history_[-1]["train_loss"] == b.history_[-1]["train_loss"]


def test_verbose_shows_a_progress_bar(capsys):
    x, y = _toy(n_per_class=1)
    TCNNEncoder(max_epochs=1, verbose=1, validation_fraction=0, device="cpu").fit(x, y)
    assert "TCNN" in capsys.readouterr().err


def test_weights_file_round_trip_and_strict_loading(tmp_path):
    enc = TCNNEncoder(device="cpu", random_state=0).initialize()
    path = tmp_path / "tcnn6.safetensors"
    enc.save_weights(path)
    again = TCNNEncoder(weights=str(path), device="cpu", random_state=99).initialize()
    images = torch.randn(2, 3, 224, 224)
    np.testing.assert_array_equal(enc.predict_proba(images), again.predict_proba(images))
    with pytest.raises(ValueError, match=r"missing keys: blocks\.10\.0\.bias.*\(24 in all\)"):
        TCNNEncoder(n_blocks=18, weights=path, device="cpu").initialize()
    mismatch = r"shape mismatches: classifier\.7\.bias: file \(6,\) vs model \(4,\)"
    with pytest.raises(ValueError, match=mismatch):
        TCNNEncoder(n_categories=4, weights=path, device="cpu").initialize()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        TCNNEncoder(weights=bad, device="cpu").initialize()
    with pytest.raises(ValueError, match="does not exist"):
        TCNNEncoder(weights=tmp_path / "nope.safetensors", device="cpu").initialize()


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.zeros(3, 224, 224), "4 dimensions"),
        (torch.zeros(1, 1, 224, 224), r"dimension 1 is 1, expected 3"),
        (torch.zeros(1, 3, 128, 128), r"dimension 2 is 128, expected 224"),
        (torch.zeros(1, 3, 224, 224, dtype=torch.uint8), "floating-point"),
        (np.zeros((1, 3, 224, 224), dtype=np.int64), "floating-point"),
        (torch.full((1, 3, 224, 224), float("nan")), "NaN"),
        (torch.zeros(0, 3, 224, 224), "empty batch"),
    ],
)
def test_bad_images_are_named(images, match):
    enc = TCNNEncoder(device="cpu", random_state=0).initialize()
    with pytest.raises(ValueError, match=match):
        enc.transform(images)
    with pytest.raises(ValueError, match=match):
        TCNNEncoder(max_epochs=1, device="cpu").fit(images, [0] * max(1, len(images)))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_blocks": 7}, "n_blocks must be one of"),
        ({"n_categories": 1}, "n_categories"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"lr": -1.0}, "lr"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"patience": 0}, "patience"),
        ({"validation_fraction": 0.9}, "leaves no training images"),
    ],
)
def test_bad_parameters_fail_in_fit(params, match):
    x, y = _toy(n_per_class=1, n_classes=3)
    enc = TCNNEncoder(device="cpu", **params)  # __init__ accepts anything
    with pytest.raises(ValueError, match=match):
        enc.fit(x, y)


def test_bad_categories_and_unfitted_use():
    x, _ = _toy(n_per_class=1)
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        TCNNEncoder(device="cpu").fit(x, [0, 9])
    with pytest.raises(ValueError, match="3 entries for 2 samples"):
        TCNNEncoder(device="cpu").fit(x[:2], [0, 1, 2])
    with pytest.raises(NotFittedError):
        TCNNEncoder(device="cpu").transform(x)
    with pytest.raises(NotFittedError):
        TCNNEncoder(device="cpu").predict(x)


def test_grouped_split_keeps_groups_whole_and_balanced():
    # 6 classes x 4 photos x 3 copies, plus one 24-tile panorama in class 2.
    y = np.concatenate([np.repeat(np.arange(6), 12), np.full(24, 2)])
    groups = np.concatenate([np.repeat(np.arange(24), 3), np.full(24, 99)])
    enc = TCNNEncoder(validation_fraction=0.2)
    train, valid = enc._split(y, groups, np.random.RandomState(0))
    assert len(train) + len(valid) == len(y) and not set(train) & set(valid)
    assert not set(groups[train]) & set(groups[valid])  # no group on both sides
    assert 99 not in set(groups[valid])  # the lopsided fold with the panorama is not chosen
    assert set(y[valid]) == set(range(6))
    with pytest.raises(ValueError, match="one label per image"):
        x, y2 = _toy(n_per_class=1)
        TCNNEncoder(device="cpu", max_epochs=1).fit(x, y2, groups=[0, 1, 2])


def test_grouped_split_of_a_small_set_uses_fewer_folds():
    # 3 images per class: sklearn would refuse the 7 folds validation_fraction=0.15 implies.
    y = np.repeat(np.arange(3), 3)
    groups = np.arange(9)
    train, valid = TCNNEncoder(validation_fraction=0.15)._split(y, groups, np.random.RandomState(0))
    assert len(valid) == 3 and sorted(np.concatenate([train, valid])) == list(range(9))
    assert set(y[valid]) == {0, 1, 2}  # 3 folds, each one image of every class
    with pytest.raises(ValueError, match="at most one image per category"):
        TCNNEncoder()._split(np.arange(3), np.arange(3), np.random.RandomState(0))


def test_cross_validate_routes_groups_to_fit():
    from sklearn.model_selection import StratifiedGroupKFold, cross_validate

    x, y = _toy(n_per_class=4)
    groups = np.arange(len(y)) // 2
    enc = TCNNEncoder(max_epochs=1, batch_size=8, device="cpu", random_state=0)
    cv = StratifiedGroupKFold(2)
    result = cross_validate(enc, x, y, groups=groups, cv=cv, params={"groups": groups})
    # The same folds fitted by hand, each with its own slice of the groups.
    by_hand = [
        clone(enc).fit(x[tr], y[tr], groups=groups[tr]).score(x[te], y[te])
        for tr, te in cv.split(x, y, groups)
    ]
    np.testing.assert_array_equal(result["test_score"], by_hand)


def test_transform_predict_is_one_pass_of_transform_and_predict():
    x, y = _toy()
    enc = TCNNEncoder(max_epochs=2, batch_size=4, validation_fraction=0, device="cpu")
    enc.set_params(random_state=0, augment=False).fit(x, y)
    calls = []
    original = enc.module_.forward_features

    def counted(batch):
        calls.append(1)
        return original(batch)

    enc.module_.forward_features = counted
    maps, predicted = enc.transform_predict(x)
    assert len(calls) == 2  # six images in batches of four: one pass per batch
    for got, want in zip(maps, enc.transform(x), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    np.testing.assert_array_equal(predicted, enc.predict(x))
    assert predicted.dtype == np.int64


def test_cosine_schedule_and_label_smoothing():
    x, y = _toy()
    params = dict(max_epochs=4, batch_size=6, validation_fraction=0, augment=False, device="cpu")
    enc = TCNNEncoder(lr=1e-3, lr_schedule="cosine", label_smoothing=0.1, random_state=0, **params)
    enc.fit(x, y)
    # 0.5 * lr * (1 + cos(pi * (epoch - 1) / 4)), set at the start of each epoch
    expected = [1e-3, 1e-3 * (2 + 2**0.5) / 4, 5e-4, 1e-3 * (2 - 2**0.5) / 4]
    assert [r["lr"] for r in enc.history_] == pytest.approx(expected, rel=1e-12)
    plain = TCNNEncoder(
        lr=1e-3, lr_schedule="constant", label_smoothing=0.0, random_state=0, **params
    )
    plain.fit(x, y)
    assert [r["lr"] for r in plain.history_] == [1e-3] * 4
    # Same weights and batches: only the smoothing differs in the first epoch's loss.
    assert enc.history_[0]["train_loss"] != plain.history_[0]["train_loss"]
    for bad, match in (
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"lr_schedule": "step"}, "lr_schedule"),
    ):
        with pytest.raises(ValueError, match=match):
            TCNNEncoder(**bad, **params).fit(x, y)


def test_mixup_and_crop_area_train_reproducibly():
    x, y = _toy()
    params = dict(max_epochs=2, batch_size=3, validation_fraction=0, device="cpu", random_state=0)
    a = TCNNEncoder(mixup=0.4, crop_area=0.3, **params).fit(x, y)
    b = TCNNEncoder(mixup=0.4, crop_area=0.3, **params).fit(x, y)
    plain = TCNNEncoder(mixup=0.0, crop_area=0.3, **params).fit(x, y)
    assert [r["train_loss"] for r in a.history_] == [r["train_loss"] for r in b.history_]
    assert a.history_[0]["train_loss"] != plain.history_[0]["train_loss"]
    for bad, match in (({"mixup": -1.0}, "mixup"), ({"crop_area": 0.0}, "crop_area")):
        with pytest.raises(ValueError, match=match):
            TCNNEncoder(**{**params, **bad}).fit(x, y)
