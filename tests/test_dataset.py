"""The dataset types: file-backed, in-memory, the toy set, reproducible augmentation."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import torch
from helpers_data import write_image, write_tone
from torch.utils.data import DataLoader

from conchshell.data.audio import load_audio
from conchshell.data.dataset import MusicImageDataset, PairDataset, TensorPairDataset
from conchshell.datasets import as_dataset, make_toy_dataset


@pytest.fixture
def files(tmp_path):
    images = [
        write_image(tmp_path / f"i{k}.png", colour=(60 * k, 0, 0), size=(20, 10)) for k in range(4)
    ]
    # two images share the long piece; the others have their own
    long = write_tone(tmp_path / "long.wav", freq=330, seconds=9.0, sr=16000)
    short = write_tone(
        tmp_path / "short.flac", freq=440, seconds=0.5, sr=44100, channels=2, format="FLAC"
    )
    other = write_tone(tmp_path / "other.wav", freq=550, seconds=8.5, sr=8000)
    audio = [long, long, short, other]
    return images, audio


def make(files, **kw):
    images, audio = files
    return MusicImageDataset(images, audio, [0, 0, 2, 1], ["sea", "sky", "sand"], **kw)


def test_items_and_attributes(files):
    ds = make(files)
    assert isinstance(ds, PairDataset)
    assert len(ds) == 4 and ds.n_categories == 3
    assert ds.categories == ["sea", "sky", "sand"]
    assert ds.category_ids.dtype == np.int64
    assert ds.category_ids.tolist() == [0, 0, 2, 1]
    assert ds.image_paths == list(files[0]) and ds.audio_paths == list(files[1])
    assert ds.feature_paths is None
    image, wave, category = ds[2]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    assert wave.shape == (128000,) and wave.dtype == torch.float32
    assert category == 2 and isinstance(category, int)
    torch.testing.assert_close(wave, load_audio(files[1][2]))
    torch.testing.assert_close(ds[-1][1], ds[3][1])
    assert ds.class_counts().tolist() == [2, 1, 1]
    assert ds.describe() == (
        "MusicImageDataset: 4 items in 3 categories (sea: 2, sky: 1, sand: 1); 3 audio files; "
        "8 s clips at 16000 Hz; augment=False"
    )
    with pytest.raises(IndexError, match="out of range"):
        ds[4]
    with pytest.raises(TypeError, match="int"):
        ds["0"]


def test_audio_is_decoded_once_per_file(files):
    ds = make(files)
    for i in (0, 1, 0, 1):
        ds.get_waveform(i)
    assert (ds._cache.misses, ds._cache.hits, len(ds._cache)) == (1, 3, 1)


def test_audio_cache_is_bounded(files):
    one_piece_mb = 9.0 * 16000 * 4 / 2**20  # the 9 s piece, float32
    ds = make(files, audio_cache_mb=one_piece_mb)
    ds.get_waveform(0)
    ds.get_waveform(3)  # 8.5 s: pushes the 9 s piece out
    assert len(ds._cache) == 1 and ds._cache.bytes <= one_piece_mb * 2**20
    ds.get_waveform(0)
    assert ds._cache.misses == 3
    nocache = make(files, audio_cache_mb=0)
    nocache.get_waveform(0)
    assert len(nocache._cache) == 0


def test_augmentation_is_reproducible_per_seed_and_epoch(files):
    a = make(files, augment=True, random_state=7)
    b = make(files, augment=True, random_state=7)
    c = make(files, augment=True, random_state=8)
    first = [a.get_waveform(0) for _ in range(2)]
    # (seed, epoch, index, k): two reads of one item differ, and match another dataset's reads
    assert not torch.equal(first[0], first[1])
    torch.testing.assert_close(torch.stack(first), torch.stack([b.get_waveform(0) for _ in "ab"]))
    assert not torch.equal(first[0], c.get_waveform(0))
    a.set_epoch(1)
    epoch1 = a.get_waveform(0)
    assert not torch.equal(epoch1, first[0])
    a.set_epoch(0)
    torch.testing.assert_close(a.get_waveform(0), first[0])
    b.set_epoch(1)
    torch.testing.assert_close(b.get_waveform(0), epoch1)
    # a training crop is a window of the normalised piece times a gain in [0.5, 1]
    peak = float(first[0].abs().max())
    assert 0.5 * 0.95 - 1e-6 <= peak <= 0.95 + 1e-6
    # no augmentation: always the first 8 s at full scale
    plain = make(files)
    torch.testing.assert_close(plain.get_waveform(0), plain.get_waveform(0))


def test_item_rng_matches_documented_seeding(files):
    ds = make(files, augment=True, random_state=5)
    ds.set_epoch(3)
    expected = np.random.default_rng([5, 3, 2, 0]).integers(0, 2**31)
    assert ds.item_rng(2).integers(0, 2**31) == expected
    assert ds.item_rng(2).integers(0, 2**31) == np.random.default_rng([5, 3, 2, 1]).integers(
        0, 2**31
    )


def test_random_state_forms(files):
    assert (
        make(files, random_state=np.random.RandomState(0)).seed
        == make(files, random_state=np.random.RandomState(0)).seed
    )
    assert (
        make(files, random_state=np.random.default_rng(1)).seed
        == make(files, random_state=np.random.default_rng(1)).seed
    )
    with pytest.raises(ValueError, match="random_state"):
        make(files, random_state="x")


def test_subset_keeps_categories_and_options(files):
    ds = make(files, augment=True, random_state=1)
    sub = ds.subset([3, 0])
    assert isinstance(sub, MusicImageDataset)
    assert sub.categories == ds.categories
    assert sub.category_ids.tolist() == [1, 0]
    assert sub.image_paths == [ds.image_paths[3], ds.image_paths[0]]
    assert sub.augment and sub.seed == ds.seed
    mask = ds.subset(np.array([True, False, True, False]))
    assert mask.category_ids.tolist() == [0, 2]
    assert len(ds.subset([])) == 0
    with pytest.raises(IndexError):
        ds.subset([9])
    with pytest.raises(ValueError, match="boolean mask"):
        ds.subset(np.array([True]))


def test_dataloader_and_pickling(files):
    ds = make(files)
    ds.get_waveform(0)
    copy = pickle.loads(pickle.dumps(ds))
    assert len(copy._cache) == 0  # each worker process decodes its own audio
    images, waves, cats = next(iter(DataLoader(copy, batch_size=4)))
    assert images.shape == (4, 3, 224, 224)
    assert waves.shape == (4, 128000)
    assert cats.tolist() == [0, 0, 2, 1]


def test_feature_paths(tmp_path, files):
    f = tmp_path / "f.npy"
    np.save(f, np.arange(2048, dtype=np.float32).reshape(2, 1024))
    ds = make(files, feature_paths=[f, None, None, None])
    torch.testing.assert_close(ds.get_feature(0), torch.arange(2048, dtype=torch.float32))
    assert ds.get_feature(1) is None
    assert "1 feature files" in ds.describe()


def test_constructor_errors(files):
    images, audio = files
    with pytest.raises(ValueError, match="audio_paths has 3"):
        MusicImageDataset(images, audio[:3], [0, 0, 0, 0], ["a"])
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        MusicImageDataset(images, audio, [0, 1, 2, 0], ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        MusicImageDataset(images, audio, [0, 0, 0, 0], ["a", "a"])
    with pytest.raises(TypeError, match="sequence of paths"):
        MusicImageDataset("x.png", audio, [0], ["a"])
    with pytest.raises(ValueError, match="duration"):
        MusicImageDataset(images, audio, [0] * 4, ["a"], duration=0)


def test_tensor_dataset_same_interface():
    images = torch.randn(3, 3, 224, 224)
    waves = torch.randn(3, 32000).clamp(-1, 1)
    ds = TensorPairDataset(images, waves, [1, 0, 1], ["a", "b"])
    assert isinstance(ds, PairDataset)
    assert ds.image_paths is None and ds.audio_paths is None
    image, wave, cat = ds[2]
    torch.testing.assert_close(image, images[2])
    torch.testing.assert_close(wave, waves[2])
    assert cat == 1
    assert ds.class_counts().tolist() == [1, 2]
    assert ds.describe().startswith("TensorPairDataset: 3 items in 2 categories (a: 1, b: 2)")
    sub = ds.subset([2])
    assert isinstance(sub, TensorPairDataset) and sub.categories == ["a", "b"]
    # default names; preprocessing of non-tensor images; duration crop and augmentation
    named = TensorPairDataset(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 100)), [0, 2])
    assert named.categories == ["0", "1", "2"]
    assert named[0][0].shape == (3, 224, 224)
    aug = TensorPairDataset(images, waves, [0, 1, 1], augment=True, duration=1.0, random_state=0)
    w = aug[0][1]
    assert w.shape == (16000,)
    assert not torch.equal(w, waves[0, :16000])
    empty = TensorPairDataset(torch.zeros(0, 3, 224, 224), torch.zeros(0, 10), [], ["a"])
    assert len(empty) == 0 and empty.class_counts().tolist() == [0]
    with pytest.raises(ValueError, match="waveforms has 2"):
        TensorPairDataset(images, waves[:2], [0, 0, 0])
    with pytest.raises(ValueError, match="NaN"):
        TensorPairDataset(images, torch.full((3, 10), float("nan")), [0, 0, 0])


def test_toy_dataset():
    timings = []
    for _ in range(3):  # best of three: the test machine is shared
        start = time.perf_counter()
        ds = make_toy_dataset()
        timings.append(time.perf_counter() - start)
    assert min(timings) < 1.0
    assert isinstance(ds, TensorPairDataset) and len(ds) == 12
    assert ds.categories == ["coast", "island", "sand_beach", "coral_reef", "deep", "ocean_wave"]
    assert ds.class_counts().tolist() == [2] * 6
    assert ds[0][1].shape == (128000,)
    small = make_toy_dataset(n_per_category=3, n_categories=8, n_samples=4000)
    assert len(small) == 24 and small.categories[6:] == ["category_6", "category_7"]
    assert small.waveforms.shape == (24, 4000)
    torch.testing.assert_close(
        make_toy_dataset(n_samples=800).images, make_toy_dataset(n_samples=800).images
    )
    # colour per category; pitch rises with the category (4 semitones each, from 220 Hz)
    colours = [ds.images[ds.category_ids == c].mean(dim=(0, 2, 3)) for c in range(6)]
    assert (
        min(float((a - b).abs().max()) for i, a in enumerate(colours) for b in colours[i + 1 :])
        > 0.3
    )
    freqs = []
    for c in range(6):
        wave = ds.waveforms[2 * c].numpy()
        spec = np.abs(np.fft.rfft(wave))
        freqs.append(np.fft.rfftfreq(len(wave), 1 / 16000)[np.argmax(spec)])
    np.testing.assert_allclose(freqs, 220 * 2 ** (4 * np.arange(6) / 12), rtol=0.01)
    assert float(ds.waveforms.abs().max()) == pytest.approx(0.95, abs=1e-6)


def test_stacks_and_training_audio(files):
    ds = make(files, augment=True, random_state=0)
    images = ds.stack_images([2, 0])
    assert images.shape == (2, 3, 224, 224)
    torch.testing.assert_close(images[0], ds.get_image(2))
    audio = ds.stack_audio()
    assert audio.shape == (4, 128000)
    # never augmented, whatever the dataset's setting
    torch.testing.assert_close(audio[2], load_audio(files[1][2]))
    a = ds.training_audio([0, 3], np.random.default_rng(1))
    b = ds.training_audio([0, 3], np.random.default_rng(1))
    torch.testing.assert_close(a, b)
    # the caller's stream: crop start (the 9 s piece is longer than 8 s), then gain, per item
    rng = np.random.default_rng(1)
    full = load_audio(files[1][0], duration=None)
    start = int(rng.integers(0, full.shape[0] - 128000 + 1))
    gain = float(rng.uniform(0.5, 1.0))
    torch.testing.assert_close(a[0], full[start : start + 128000] * gain)
    assert ds.stack_images([]).shape == (0, 3, 224, 224)
    assert ds.stack_audio([]).shape == (0, 128000)
    toy = make_toy_dataset(n_per_category=1, n_categories=2, n_samples=1000)
    assert toy.stack_images() is toy.images
    torch.testing.assert_close(toy.stack_images([1]), toy.images[1:])
    torch.testing.assert_close(toy.stack_audio(), toy.waveforms)
    assert toy.training_audio([0, 1, 1], 0).shape == (3, 1000)


def test_as_dataset():
    toy = make_toy_dataset(n_per_category=1, n_categories=2, n_samples=1000)
    assert as_dataset(toy) is toy
    with pytest.raises(ValueError, match="taken from the dataset"):
        as_dataset(toy, audio=toy.waveforms)
    with pytest.raises(ValueError, match="dataset is empty"):
        as_dataset(toy.subset([]))
    ds = as_dataset(toy.images, audio=toy.waveforms, categories=torch.tensor([1, 0]))
    assert isinstance(ds, TensorPairDataset)
    assert ds.categories == ["0", "1"] and ds.category_ids.tolist() == [1, 0]
    assert ds.n_samples == 128000  # cut or padded to 8 s by default
    torch.testing.assert_close(ds.stack_audio()[:, :1000], toy.waveforms)
    named = as_dataset(
        np.zeros((3, 8, 8, 3), np.uint8),
        audio=np.zeros((3, 50)),
        categories=["sky", "sea", "sky"],
        duration=None,
    )
    assert named.categories == ["sea", "sky"] and named.category_ids.tolist() == [1, 0, 1]
    plain = as_dataset(toy.images, audio=toy.waveforms)
    assert plain.category_ids.tolist() == [0, 0] and plain.categories == ["0"]
    with pytest.raises(ValueError, match="images need their audio"):
        as_dataset(toy.images)
    with pytest.raises(ValueError, match="images has 2 items but waveforms has 1"):
        as_dataset(toy.images, audio=toy.waveforms[:1])
