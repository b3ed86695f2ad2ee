"""Bad input to the data layer: each case gets a clear error naming the file and the problem.

Never a traceback from inside Pillow, libsndfile, openpyxl or torch: the error type is
ValueError or FileNotFoundError and the message says which file and what is wrong.
"""

from __future__ import annotations

import os
import shutil
import zipfile

import numpy as np
import pytest
import soundfile as sf
from helpers_data import bop_plan, make_bop, tone, write_image, write_label, write_tone
from PIL import Image

from conchshell.data.audio import load_audio
from conchshell.data.bop import read_label
from conchshell.data.dataset import MusicImageDataset
from conchshell.data.images import load_image
from conchshell.datasets import load_bop, load_pairs

# -- images ------------------------------------------------------------------------------------


def _jpeg_bytes():
    import io

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png_bytes():
    import io

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("corrupt.jpg", os.urandom(0) + b"this is not an image" * 50, "not an image"),
        ("truncated.jpg", _jpeg_bytes()[:600], "truncated"),
        ("truncated.png", _png_bytes()[:400], "cannot read image file"),
        ("empty.png", b"", "cannot read image file"),
    ],
)
def test_bad_image_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        load_image(path)
    assert name in str(info.value)


def test_missing_image_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*nope.jpg"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ValueError, match=r"not a file"):
        load_image(tmp_path)


# -- audio -------------------------------------------------------------------------------------


def _encoded(fmt, **kw):
    import io

    buf = io.BytesIO()
    sf.write(buf, tone(440, 0.5, 16000), 16000, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("corrupt.wav", b"RIFF garbage that is no wave" * 20, "cannot read audio file"),
        (
            "noise.ogg",
            bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)),
            "cannot read audio file",
        ),
        ("truncated.wav", _encoded("WAV")[:5000], "truncated"),
        ("truncated.flac", _encoded("FLAC")[: len(_encoded("FLAC")) // 2], "cannot read audio"),
        ("truncated.ogg", _encoded("OGG")[: len(_encoded("OGG")) // 2], "cannot read audio"),
        ("header_only.wav", _encoded("WAV")[:44], "zero-length|truncated|cannot read"),
        ("empty.wav", b"", r"empty \(0 bytes\)"),
    ],
)
def test_bad_audio_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        load_audio(path)
    assert name in str(info.value)


def test_zero_length_silent_and_nonfinite_audio(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match=r"zero.wav.*zero-length"):
        load_audio(tmp_path / "zero.wav")
    sf.write(tmp_path / "silent.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(ValueError, match=r"silent.wav.*silent"):
        load_audio(tmp_path / "silent.wav")
    bad = np.full(1600, 0.1, np.float32)
    bad[7] = np.inf
    sf.write(tmp_path / "inf.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"inf.wav.*NaN or infinite"):
        load_audio(tmp_path / "inf.wav")
    with pytest.raises(FileNotFoundError, match=r"audio file not found: .*gone.wav"):
        load_audio(tmp_path / "gone.wav")


@pytest.mark.parametrize(
    ("sr", "channels"), [(44100, 2), (8000, 1), (48000, 6), (96000, 3), (11025, 4), (22050, 8)]
)
def test_audio_of_any_rate_and_channel_count_works(tmp_path, sr, channels):
    path = write_tone(tmp_path / "x.wav", seconds=0.1, sr=sr, channels=channels)
    clip = load_audio(path)
    assert clip.shape == (128000,)
    assert float(clip.abs().max()) == pytest.approx(0.95, abs=1e-6)


# -- BOP Label files ---------------------------------------------------------------------------


@pytest.fixture
def bop(tmp_path):
    return make_bop(tmp_path / "BOP", npy=False)


def _label_rows():
    return [(f, f"{stem}.npy", g, w) for _, f, stem, g, w in bop_plan()]


def test_label_not_an_xlsx(bop):
    (bop / "Label" / "Label.xlsx").write_text("img_type,img_npy_name\n")
    with pytest.raises(ValueError, match=r"cannot read label file .*Label.xlsx.* as an .xlsx"):
        load_bop(bop, "train")


def test_label_zip_without_workbook(bop):
    with zipfile.ZipFile(bop / "Label" / "Label.xlsx", "w") as z:
        z.writestr("hello.txt", "not a workbook")
    with pytest.raises(ValueError, match=r"Label.xlsx.* as an .xlsx"):
        load_bop(bop, "train")


def test_label_missing_sheet(bop):
    write_label(bop / "Label" / "Label.xlsx", _label_rows(), sheet="Data")
    with pytest.raises(
        ValueError, match=r"Label.xlsx.*no sheet named 'Sheet1' \(sheets: \['Data'\]"
    ):
        load_bop(bop, "train")


def test_label_missing_column(bop):
    header = ("img_type", "img_npy_name", "style", "muse_wav_name")
    write_label(bop / "Label" / "Label.xlsx", _label_rows(), header=header)
    with pytest.raises(ValueError, match=r"Label.xlsx.*missing column\(s\) \['genre'\]"):
        load_bop(bop, "train")


def test_label_empty_sheet_and_empty_cell(bop, tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "Sheet1"
    wb.save(tmp_path / "empty.xlsx")
    with pytest.raises(ValueError, match=r"empty.xlsx.*missing column|empty.xlsx.*is empty"):
        read_label(tmp_path / "empty.xlsx")
    rows = _label_rows()
    rows[3] = (rows[3][0], rows[3][1], None, rows[3][3])
    write_label(bop / "Label" / "Label.xlsx", rows)
    with pytest.raises(ValueError, match=r"Label.xlsx.*row 5: empty \['genre'\]"):
        load_bop(bop, "train")


def test_label_files_missing(bop):
    (bop / "Label" / "Label_small.xlsx").unlink()
    with pytest.raises(FileNotFoundError, match=r"label file not found: .*Label_small.xlsx"):
        load_bop(bop, "train", small=True)
    shutil.rmtree(bop / "Label")
    with pytest.raises(FileNotFoundError, match=r"no Label/ sub-folder"):
        load_bop(bop, "train")


def test_label_conflicting_duplicate_rows(bop):
    rows = _label_rows()
    rows.append((rows[0][0], rows[0][1], "ocean", "o0.wav"))
    write_label(bop / "Label" / "Label.xlsx", rows)
    with pytest.raises(
        ValueError, match=r"rows 2 and 14 give image coast-1/coast000.npy different"
    ):
        load_bop(bop, "train")


# -- BOP layout --------------------------------------------------------------------------------


def test_bop_missing_folders_and_bad_split(bop, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"BOP dataset folder not found"):
        load_bop(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"split must be one of"):
        load_bop(bop, "test")
    with pytest.raises(ValueError, match=r"missing must be"):
        load_bop(bop, missing="ignore")
    shutil.rmtree(bop / "Img" / "val_set")
    with pytest.raises(FileNotFoundError, match=r"split folder not found: .*val_set"):
        load_bop(bop, "val")
    shutil.rmtree(bop / "Wav")
    with pytest.raises(FileNotFoundError, match=r"no Wav/ sub-folder"):
        load_bop(bop, "train")


def test_bop_empty_split(bop):
    for folder in (bop / "Img" / "val_set").iterdir():
        shutil.rmtree(folder)
    rows = [(f, f"{s}.npy", g, w) for split, f, s, g, w in bop_plan() if split == "train"]
    write_label(bop / "Label" / "Label.xlsx", rows)
    with pytest.raises(ValueError, match=r"the 'val' split of .* is empty"):
        load_bop(bop, "val")


@pytest.mark.parametrize(
    ("folder", "match"),
    [
        ("lagoon", r"category folder 'lagoon' is not named <name>-<N>"),
        ("lagoon-0", r"'lagoon-0': category number 0 is out of range"),
        ("lagoon-7", r"must run 1..7 without gaps.*\[4, 5, 6\].*out of range"),
        ("lagoon-2", r"more than one name.*\{2: \['island', 'lagoon'\]\}"),
    ],
)
def test_bop_unknown_category_folders(bop, folder, match):
    write_image(bop / "Img" / "train_set" / folder / "x.jpg")
    with pytest.raises(ValueError, match=match):
        load_bop(bop, "train")


def test_bop_category_folder_not_in_label(bop):
    rows = [r for r in _label_rows() if r[0] != "island-2"]
    write_label(bop / "Label" / "Label.xlsx", rows)
    with pytest.raises(ValueError, match=r"\['island-2'\] in .*train_set.* have no rows in"):
        load_bop(bop, "train")


def test_bop_referenced_files_missing(bop):
    (bop / "Img" / "train_set" / "coast-1" / "coast001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"row 3: image coast-1/coast001.\* is in no split"):
        load_bop(bop, "train")
    write_image(bop / "Img" / "train_set" / "coast-1" / "coast001.jpg")
    (bop / "Wav" / "ocean" / "o0.wav").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"reference a missing audio file: row \d+: .*o0.wav"
    ):
        load_bop(bop, "val", missing="error")
    (bop / "Img" / "train_set" / "coast-1" / "coast001.jpg").unlink()
    with pytest.warns(UserWarning) as record:
        ds = load_bop(bop, "train", missing="skip")
    messages = " ".join(str(w.message) for w in record)
    assert "skipped 1 Label row(s) that reference a missing image file" in messages
    assert "skipped 3 Label row(s) that reference a missing audio file" in messages
    assert len(ds) == 9 - 1 - 3


def test_bop_corrupt_files_fail_on_access_naming_the_file(bop):
    ds = load_bop(bop, "val", augment=False)
    ds.image_paths[0].write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"coast100.jpg"):
        ds[0]
    ds.audio_paths[1].write_bytes(_encoded("WAV")[:3000])
    with pytest.raises(ValueError, match=f"{ds.audio_paths[1].name}.*truncated"):
        ds.get_waveform(1)


# -- CSV of pairs ------------------------------------------------------------------------------


@pytest.fixture
def pair_files(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_tone(tmp_path / "a.wav")
    return tmp_path


@pytest.mark.parametrize(
    ("text", "kwargs", "exc", "match"),
    [
        ("", {}, ValueError, "is empty: expected a header row"),
        ("\n\n", {}, ValueError, "is empty"),
        ("image,audio,category\n", {}, ValueError, "has a header but no rows"),
        (
            "image,sound,category\na.jpg,a.wav,x\n",
            {},
            ValueError,
            r"missing column\(s\) \['audio'\]",
        ),
        ("image,audio,category,image\na.jpg,a.wav,x,b\n", {}, ValueError, "more than once"),
        ("image,audio,category\na.jpg,,x\n", {}, ValueError, r"line 2: empty \['audio'\]"),
        ("image,audio,category\na.jpg,a.wav\n", {}, ValueError, r"line 2: empty \['category'\]"),
        (
            "image,audio,category\na.jpg,a.wav,lake\n",
            {"categories": ["sea"]},
            ValueError,
            r"line 2: unknown category 'lake' \(known: \['sea'\]\)",
        ),
        (
            "image,audio,category\na.jpg,a.wav,3\n",
            {"categories": ["sea"]},
            ValueError,
            "line 2: category id 3 is out of range for 1 categories",
        ),
        ("image,audio,category\na.jpg,a.wav,-1\n", {}, ValueError, "line 2: category id -1"),
        (
            "image,audio,category\na.jpg,a.wav,1\na.jpg,a.wav,sea\n",
            {},
            ValueError,
            "mixes names and integer ids",
        ),
        (
            "image,audio,category\nb.jpg,a.wav,sea\n",
            {},
            FileNotFoundError,
            r"1 row\(s\) name missing files: line 2: image .*b.jpg",
        ),
        (
            "image,audio,category\na.jpg,b.wav,sea\n",
            {"missing": "skip"},
            ValueError,
            "every row names a missing file",
        ),
    ],
)
def test_bad_csv(pair_files, text, kwargs, exc, match):
    path = pair_files / "pairs.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(exc, match=match) as info:
        if kwargs.get("missing") == "skip":
            with pytest.warns(UserWarning, match=r"skipped 1 row"):
                load_pairs(path, **kwargs)
        else:
            load_pairs(path, **kwargs)
    assert "pairs.csv" in str(info.value)


def test_csv_not_utf8_and_missing(pair_files):
    path = pair_files / "latin.csv"
    path.write_bytes("image,audio,category\na.jpg,a.wav,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv.* is not UTF-8"):
        load_pairs(path)
    with pytest.raises(FileNotFoundError, match=r"pairs CSV file not found: .*none.csv"):
        load_pairs(pair_files / "none.csv")


# -- dataset constructor -----------------------------------------------------------------------


def test_dataset_with_missing_files_and_bad_feature(pair_files):
    with pytest.raises(FileNotFoundError, match=r"1 audio file\(s\) not found: .*b.wav"):
        MusicImageDataset([pair_files / "a.jpg"], [pair_files / "b.wav"], [0], ["x"])
    bad = pair_files / "f.npy"
    bad.write_bytes(b"not numpy")
    ds = MusicImageDataset(
        [pair_files / "a.jpg"], [pair_files / "a.wav"], [0], ["x"], feature_paths=[bad]
    )
    with pytest.raises(ValueError, match=r"cannot read feature file .*f.npy"):
        ds.get_feature(0)


# -- every audio file is checked when the dataset loads ----------------------------------------


def _write_bad_audio(path, kind):
    if kind == "not-audio":
        path.write_text("RIFF? no, a text file")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zero-length":
        sf.write(path, np.zeros(0, np.float32), 16000)
    elif kind == "truncated":
        write_tone(path, seconds=0.5)
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "silent":
        sf.write(path, np.zeros(1600, np.float32), 16000)
    else:  # a NaN or an Inf far into the file, past the first block the check reads
        wave = np.full(200_000, 0.1, np.float32)
        wave[150_000] = np.nan if kind == "nan" else -np.inf
        sf.write(path, wave, 16000, subtype="FLOAT")
    return path


BAD_AUDIO = [
    ("not-audio", r"cannot read audio file .*bad\.wav.*Format not recognised"),
    ("empty", r"audio file .*bad\.wav' is empty \(0 bytes\)"),
    ("zero-length", r"audio file .*bad\.wav' holds no samples"),
    ("truncated", r"audio file .*bad\.wav' is truncated"),
    ("silent", r"audio file .*bad\.wav' is silent"),
    ("nan", r"audio file .*bad\.wav' contains NaN or infinite samples \(the first at frame 150000"),
    ("inf", r"audio file .*bad\.wav' contains NaN or infinite samples \(the first at frame"),
]


@pytest.mark.parametrize(("kind", "match"), BAD_AUDIO, ids=[k for k, _ in BAD_AUDIO])
def test_load_pairs_checks_every_audio_file_naming_it_and_its_lines(pair_files, kind, match):
    _write_bad_audio(pair_files / "bad.wav", kind)
    csv = pair_files / "pairs.csv"
    csv.write_text("image,audio,category\na.jpg,a.wav,x\na.jpg,bad.wav,x\na.jpg,bad.wav,y\n")
    with pytest.raises(ValueError, match=rf"pairs CSV '.*pairs\.csv', lines 3, 4: {match}"):
        load_pairs(csv)
    ds = load_pairs(csv, check_audio=False)  # the check can be left to training
    with pytest.raises(ValueError, match=match):
        ds.get_waveform(1)


def test_several_bad_files_are_listed_in_one_error(pair_files):
    _write_bad_audio(pair_files / "nan.wav", "nan")
    _write_bad_audio(pair_files / "empty.wav", "empty")
    csv = pair_files / "pairs.csv"
    csv.write_text("image,audio,category\na.jpg,nan.wav,x\na.jpg,a.wav,x\na.jpg,empty.wav,x\n")
    with pytest.raises(
        ValueError,
        match=r"pairs\.csv': 2 audio files cannot be used: line 2: .*nan\.wav.*NaN.*; "
        r"line 4: .*empty\.wav' is empty",
    ):
        load_pairs(csv)


def test_load_bop_checks_every_audio_file_naming_its_label_rows(bop):
    plan = bop_plan()  # one Label row per entry, from row 2 on
    rows = [
        i + 2 for i, (split, *_, wav) in enumerate(plan) if split == "train" and wav == "b1.wav"
    ]
    _write_bad_audio(bop / "Wav" / "beach" / "b1.wav", "nan")
    shown = ", ".join(map(str, rows[:3])) + (f" and {len(rows) - 3} more" if len(rows) > 3 else "")
    with pytest.raises(
        ValueError,
        match=rf"the 'train' split of BOP '.*BOP', Label\.xlsx rows {shown}: audio file "
        r"'.*b1\.wav' contains NaN",
    ):
        load_bop(bop, "train")
    assert len(load_bop(bop, "train", check_audio=False)) == 9


def test_each_distinct_audio_file_is_decoded_once(bop, monkeypatch):
    import conchshell.data.audio as audio

    checked = []
    real = audio.check_audio_file
    monkeypatch.setattr(audio, "check_audio_file", lambda p, **kw: (checked.append(p), real(p))[1])
    ds = load_bop(bop, "train")
    assert len(ds) == 9 and len(checked) == len(set(ds.audio_paths)) == 3
    checked.clear()
    ds.subset([0, 1])  # a subset of a checked dataset is not checked again
    assert checked == []


def test_music_image_dataset_checks_its_audio_naming_the_item(pair_files):
    bad = _write_bad_audio(pair_files / "bad.wav", "zero-length")
    images = [pair_files / "a.jpg"] * 3
    with pytest.raises(ValueError, match=r"MusicImageDataset, item 2: .*bad\.wav' holds no"):
        MusicImageDataset(images, [pair_files / "a.wav"] * 2 + [bad], [0, 0, 0], ["x"])
    with pytest.raises(ValueError, match=r"my pairs, items 0, 1: .*bad\.wav"):
        MusicImageDataset(images[:2], [bad, bad], [0, 0], ["x"], name="my pairs")
    ds = MusicImageDataset(images[:1], [bad], [0], ["x"], check_audio=False)
    assert len(ds) == 1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda d: load_bop(os.fsencode(d)), r"root must be a str or a path, got bytes: b'"),
        (
            lambda d: load_pairs(os.fsencode(d / "p.csv")),
            r"csv_path must be a str or a path, got bytes: b'.*p\.csv'",
        ),
        (lambda d: load_pairs(d / "p.csv", root=b"x"), r"root must be .* got bytes: b'x'"),
        (
            lambda d: MusicImageDataset([b"a.jpg"], [d / "a.wav"], [0], ["x"]),
            r"image_paths\[0\] must be a str or a path, got bytes: b'a\.jpg'",
        ),
        (lambda d: load_audio(b"a.wav"), r"audio path must be .* got bytes: b'a\.wav'"),
    ],
    ids=["load_bop", "load_pairs", "load_pairs-root", "MusicImageDataset", "load_audio"],
)
def test_a_bytes_path_is_a_type_error_naming_argument_and_value(pair_files, call, match):
    with pytest.raises(TypeError, match=match):
        call(pair_files)
