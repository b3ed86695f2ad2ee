"""load_pairs: a user's CSV of image, audio, category."""

from __future__ import annotations

import pytest
import torch
from helpers_data import write_image, write_tone

from conchshell.data.dataset import MusicImageDataset
from conchshell.datasets import load_bop, load_pairs


@pytest.fixture
def folder(tmp_path):
    write_image(tmp_path / "img" / "a.jpg", (255, 0, 0))
    write_image(tmp_path / "img" / "b.png", (0, 0, 255))
    write_tone(tmp_path / "music" / "calm.wav", seconds=0.2, sr=22050, channels=2)
    write_tone(tmp_path / "music" / "storm.flac", seconds=0.2, sr=48000, format="FLAC")
    return tmp_path


def write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_names_relative_paths_and_sorted_categories(folder):
    csv = write_csv(
        folder / "pairs.csv",
        "image,audio,category\nimg/a.jpg,music/calm.wav,sea\nimg/b.png,music/storm.flac,beach\n",
    )
    ds = load_pairs(csv)
    assert isinstance(ds, MusicImageDataset)
    assert ds.categories == ["beach", "sea"]
    assert ds.category_ids.tolist() == [1, 0]
    assert ds.image_paths == [folder / "img" / "a.jpg", folder / "img" / "b.png"]
    assert ds.audio_paths == [folder / "music" / "calm.wav", folder / "music" / "storm.flac"]
    assert ds.augment is False
    image, wave, cat = ds[1]
    assert image.shape == (3, 224, 224) and wave.shape == (128000,) and cat == 0
    assert ds.describe().startswith(f"pairs from {csv}: 2 items in 2 categories (beach: 1, sea: 1)")


def test_ids_given_categories_absolute_paths_and_extras(folder):
    sub = folder / "lists"
    sub.mkdir()
    a = folder / "img" / "a.jpg"
    csv = write_csv(
        sub / "p.csv",
        # BOM, upper-case header in another order, an extra column, blank lines, spaces
        f"\ufeffCategory , Audio,IMAGE,note\n\n2,{folder}/music/calm.wav, {a} ,x\n"
        f"sky,../music/storm.flac,../img/b.png,y\n\n",
    )
    ds = load_pairs(csv, categories=["sea", "sky", "sand"], augment=True, random_state=0)
    assert ds.categories == ["sea", "sky", "sand"]
    assert ds.category_ids.tolist() == [2, 1]
    assert ds.image_paths == [a, sub / ".." / "img" / "b.png"]
    assert ds.augment and ds.seed == 0
    ids_only = write_csv(folder / "ids.csv", "image,audio,category\nimg/a.jpg,music/calm.wav,2\n")
    assert load_pairs(ids_only).categories == ["0", "1", "2"]


def test_root_option(folder, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("csvs") / "p.csv"
    write_csv(elsewhere, "image,audio,category\nimg/a.jpg,music/calm.wav,sea\n")
    ds = load_pairs(elsewhere, root=folder)
    assert ds.image_paths == [folder / "img" / "a.jpg"]


def test_missing_file_skip_policy(folder):
    csv = write_csv(
        folder / "p.csv",
        "image,audio,category\nimg/a.jpg,music/calm.wav,sea\nimg/zz.jpg,music/calm.wav,sky\n",
    )
    with pytest.warns(UserWarning, match=r"skipped 1 row\(s\).*line 3: image .*zz.jpg"):
        ds = load_pairs(csv, missing="skip", categories=["sea", "sky"])
    assert len(ds) == 1 and ds.categories == ["sea", "sky"]


def test_bop_and_pairs_give_the_same_items(folder):
    from helpers_data import make_bop

    root = make_bop(folder / "BOP")
    bop = load_bop(root, "val")
    lines = ["image,audio,category"] + [
        f"{i},{a},{bop.categories[c]}"
        for i, a, c in zip(bop.image_paths, bop.audio_paths, bop.category_ids, strict=True)
    ]
    csv = write_csv(folder / "val.csv", "\n".join(lines) + "\n")
    pairs = load_pairs(csv, categories=bop.categories)
    assert type(pairs) is type(bop)
    for i in range(len(bop)):
        for x, y in zip(bop[i], pairs[i], strict=True):
            if isinstance(x, torch.Tensor):
                torch.testing.assert_close(x, y)
            else:
                assert x == y
