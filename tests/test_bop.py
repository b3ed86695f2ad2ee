"""load_bop on a hand-made folder in the authors' layout, with real .xlsx Label files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers_data import BOP_FOLDERS, bop_plan, make_bop, write_image, write_label

from conchshell.data.bop import parse_category_folder, read_label
from conchshell.data.dataset import MusicImageDataset
from conchshell.datasets import load_bop


@pytest.fixture
def bop(tmp_path):
    return make_bop(tmp_path / "BOP")


def expected(split, small=False):
    rows = [r for r in bop_plan() if r[0] == split and not (small and r[2].endswith("-1"))]
    return sorted(rows, key=lambda r: (r[1], r[2] + ".jpg"))


@pytest.mark.parametrize(("split", "small"), [("train", False), ("train", True), ("val", False)])
def test_load_bop_reads_the_layout(bop, split, small):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Label_small's unlisted augmented copies: no warning
        ds = load_bop(bop, split, small)
    assert isinstance(ds, MusicImageDataset)
    rows = expected(split, small)
    assert (
        len(ds)
        == len(rows)
        == {("train", False): 9, ("train", True): 6, ("val", False): 3}[(split, small)]
    )
    assert ds.categories == ["coast", "island", "sand_beach"]
    sub = "train_set" if split == "train" else "val_set"
    assert ds.image_paths == [bop / "Img" / sub / f / f"{stem}.jpg" for _, f, stem, _, _ in rows]
    assert ds.audio_paths == [bop / "Wav" / g / w for *_, g, w in rows]
    assert ds.category_ids.tolist() == [BOP_FOLDERS.index(f) for _, f, *_ in rows]
    assert ds.augment is (split == "train")
    assert ds.name == f"BOP {split}" + (" (small)" if small else "")


def test_items_load_from_any_rate_and_channel_count(bop):
    ds = load_bop(bop, "train", augment=False)
    # the three pieces are 44.1 kHz stereo, 8 kHz mono, 48 kHz six-channel
    for i in range(len(ds)):
        image, wave, cat = ds[i]
        assert image.shape == (3, 224, 224)
        assert wave.shape == (128000,)
        assert float(wave.abs().max()) == pytest.approx(0.95, abs=1e-6)
        assert wave[round(0.3 * 16000) + 1 :].abs().max() == 0  # 0.3 s pieces, zero-padded
        assert cat == ds.category_ids[i]
    assert ds._cache.misses == 3  # one decode per piece of music


def test_categories_agree_between_splits_even_if_one_lacks_a_category(bop):
    # val has no island images (folder and Label rows gone): ids and names still match train's
    (bop / "Img" / "val_set" / "island-2" / "island100.jpg").unlink()
    (bop / "Img" / "val_set" / "island-2").rmdir()
    rows = [(f, f"{stem}.npy", g, w) for _, f, stem, g, w in bop_plan() if stem != "island100"]
    write_label(bop / "Label" / "Label.xlsx", rows)
    val = load_bop(bop, "val")
    train = load_bop(bop, "train")
    assert val.categories == train.categories == ["coast", "island", "sand_beach"]
    assert val.category_ids.tolist() == [0, 2]
    assert val.class_counts().tolist() == [1, 0, 1]
    assert train.class_counts().tolist() == [3, 3, 3]


def test_missing_image_skip_policy_warns_with_count(bop):
    (bop / "Img" / "val_set" / "island-2" / "island100.jpg").unlink()
    with pytest.warns(
        UserWarning, match=r"skipped 1 Label row\(s\) that reference a missing image"
    ):
        val = load_bop(bop, "val", missing="skip")
    assert val.category_ids.tolist() == [0, 2]


def test_feature_paths_from_npy(bop):
    train = load_bop(bop, "train")
    for i, f in enumerate(train.feature_paths):
        stem = train.image_paths[i].stem
        if stem.endswith("000"):
            assert f == bop / "Npy" / "i3d_npy_train" / train.image_paths[i].parent.name / (
                f"{stem}.npy"
            )
            feat = train.get_feature(i)
            assert feat.shape == (2048,)
            assert torch.all(feat == train.category_ids[i])
        else:
            assert f is None
    assert load_bop(bop, "val").feature_paths == [None, None, None]


def test_unlisted_image_is_skipped_with_a_count(bop):
    write_image(bop / "Img" / "train_set" / "coast-1" / "coast999.jpg")
    write_image(bop / "Img" / "train_set" / "coast-1" / "coast998.jpg")
    with pytest.warns(UserWarning, match=r"skipped 2 image\(s\).*no row in Label.xlsx"):
        ds = load_bop(bop, "train")
    assert len(ds) == 9
    # with Label_small an unlisted original (not a -1..-5 copy) is also reported
    with pytest.warns(UserWarning, match=r"skipped 5 image\(s\).*Label_small.xlsx"):
        load_bop(bop, "train", small=True)


def test_more_than_nine_categories_and_extra_label_columns(tmp_path):
    root = tmp_path / "B"
    rows = []
    for n in range(1, 12):
        folder = f"cat{n}-{n}"
        for split, sub in (("t", "train_set"), ("v", "val_set")):
            write_image(root / "Img" / sub / folder / f"{split}{n}.png")
            rows.append((n, folder, f"{split}{n}.npy", "g", "a.wav"))
    from helpers_data import write_tone

    write_tone(root / "Wav" / "g" / "a.wav")
    write_label(
        root / "Label" / "Label.xlsx",
        rows,
        header=("", "img_type", "img_npy_name", "Genre ", "muse_wav_name"),
    )
    ds = load_bop(root, "val")
    assert ds.categories == [f"cat{n}" for n in range(1, 12)]
    assert ds.category_ids.tolist() == sorted(range(11), key=lambda i: f"cat{i + 1}-{i + 1}")


def test_read_label_and_folder_names(bop):
    rows = read_label(bop / "Label" / "Label.xlsx")
    assert len(rows) == 12
    assert rows[0].row == 2 and rows[0].img_type == "coast-1"
    assert rows[0].stem == "coast000"
    assert parse_category_folder("coral_reef-4") == ("coral_reef", 4)
    assert parse_category_folder("deep-sea-5") == ("deep-sea", 5)
    np.testing.assert_array_equal([parse_category_folder(f)[1] for f in BOP_FOLDERS], [1, 2, 3])
