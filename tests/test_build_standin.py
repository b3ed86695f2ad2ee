"""The offline stand-in dataset: committed material, build, BOP round trip, determinism."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers_data import needs_font

from conchshell.data import build as build_module
from conchshell.data import piano
from conchshell.data.build import STANDIN_DIR, build_standin
from conchshell.data.scenes import CATEGORIES, category_by_name, perform
from conchshell.levels import CLIP_SAMPLES, SAMPLE_RATE

# Distinct original photographs per category in the committed material (issue 3: forest and
# sunset are short of the 28 aimed at; Debian ships few more free photos of them).
ORIGINALS = {"ocean": 28, "forest": 17, "mountain": 22, "night_sky": 30, "sunset": 12, "city": 35}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def material() -> tuple[dict, dict]:
    manifest = json.loads((STANDIN_DIR / "manifest.json").read_text(encoding="utf-8"))
    scores = json.loads((STANDIN_DIR / "scores.json").read_text(encoding="utf-8"))
    return manifest, scores


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("standin") / "data"
    summary = build_standin(root, seed=0)
    return root, summary


def test_committed_material_matches_its_manifest(material):
    manifest, scores = material
    images = manifest["images"]
    for record in images:
        assert _sha(STANDIN_DIR / record["file"]) == record["sha256"], record["file"]
        assert record["author"] and record["licence"] and record["package_version"]
        assert len(record["source_sha256"]) == 64
    assert _sha(STANDIN_DIR / "scores.json") == manifest["scores"]["sha256"]
    per_category = Counter(r["category"] for r in images)
    assert per_category == ORIGINALS
    # Distinct photographs, not copies of one file.
    assert len({r["source_sha256"] for r in images}) == len(images)
    # Each category draws on at least two packages, so no package stands for a scene.
    for category in CATEGORIES:
        packages = {r["package"] for r in images if r["category"] == category.name}
        assert len(packages) >= 2, category.name
    clips = Counter(c["category"] for c in scores["clips"])
    assert min(clips.values()) >= 20
    assert len({(c["corpus_path"], c["start_ql"]) for c in scores["clips"]}) == len(scores["clips"])
    attribution = (STANDIN_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for record in images:
        assert f"| {record['id']} |" in attribution


def test_perform_applies_the_category_character():
    notes = [[0.0, 1.0, 60], [1.0, 1.0, 64], [2.5, 0.5, 67]]
    city = category_by_name("city")
    played = perform(notes, city)
    assert [round(n[0], 6) for n in played] == [0.0, round(60 / 132, 6), round(2.5 * 60 / 132, 6)]
    assert played[0][1] == pytest.approx(60 / 132 * city.articulation)
    # Median 64 moved to the category's register, 67.
    assert [n[2] for n in played] == [63, 67, 70]
    assert [n[3] for n in played] == [96, 96, 86]
    with pytest.raises(ValueError, match="unknown scene category 'beach'"):
        category_by_name("beach")
    with pytest.raises(ValueError, match="empty excerpt"):
        perform([], city)


def test_build_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="seed must be >= 0"):
        build_standin(tmp_path / "x", seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        build_standin(tmp_path / "x", seed="0")
    with pytest.raises(TypeError, match="force must be a bool"):
        build_standin(tmp_path / "x", force="yes")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        build_standin(tmp_path / "file")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(FileExistsError, match="not a stand-in dataset"):
            build_standin(tmp_path / "mine", force=force)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_missing_soundfont_names_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv("CONCHSHELL_SOUNDFONT", raising=False)
    monkeypatch.setattr(piano, "SOUNDFONT_PATHS", (str(tmp_path / "none.sf3"),))
    with pytest.raises(FileNotFoundError, match="fluidr3mono-gm-soundfont"):
        build_standin(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


@needs_font
def test_silent_clip_is_refused():
    renderer = piano.PianoRenderer()
    clip = {"id": "x_000", "corpus_path": "none", "notes": [[0.0, 0.25, 60]]}
    with pytest.raises(RuntimeError, match=r"clip x_000 \(none\) is \d+% silent"):
        build_module._render_clip(renderer, clip, category_by_name("ocean"))


@needs_font
def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "MAX_SILENT_FRACTION", -1.0)
    with pytest.raises(RuntimeError, match="silent"):
        build_standin(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_silent_fraction_counts_quiet_frames():
    wave = np.zeros(32000, dtype=np.float32)
    wave[:16000] = 0.5
    assert piano.silent_fraction(wave) == pytest.approx(0.5)
    assert piano.silent_fraction(np.zeros(0)) == 0.0


@needs_font
def test_build_counts_and_split(built):
    root, summary = built
    assert summary.categories == tuple(c.folder for c in CATEGORIES)
    text = summary.describe()
    assert "ocean-1" in text and "city-6" in text
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    for category in CATEGORIES:
        folder = category.folder
        originals = sum(summary.originals[s][folder] for s in ("train", "val"))
        images = sum(summary.images[s][folder] for s in ("train", "val"))
        assert originals == ORIGINALS[category.name]
        assert images == 3 * originals  # two augmented copies each
        assert summary.originals["val"][folder] == round(0.15 * originals)
        assert summary.clips["train"][category.name] + summary.clips["val"][category.name] >= 20
        wavs = sorted((root / "Wav" / category.name).glob("*.wav"))
        assert len(wavs) >= 20
        # Files on disk agree with the summary.
        for split in ("train", "val"):
            on_disk = list((root / "Img" / f"{split}_set" / folder).glob("*.jpg"))
            assert len(on_disk) == summary.images[split][folder]
    # Seed 0: 123 train and 21 val originals, 369 and 63 images with the augmented copies.
    assert [sum(summary.originals[s].values()) for s in ("train", "val")] == [123, 21]
    assert [sum(summary.images[s].values()) for s in ("train", "val")] == [369, 63]
    # Panorama tiles never straddle the split; augmented copies follow their original.
    sides: dict[str, set[str]] = {}
    for entry in manifest["files"]:
        if entry["kind"] == "image":
            sides.setdefault(entry["group"], set()).add(entry["split"])
            sides.setdefault(entry["original"], set()).add(entry["split"])
    assert all(len(s) == 1 for s in sides.values())
    # Validation images are paired with clips the training split never uses.
    audio_split: dict[str, set[str]] = {}
    for entry in manifest["files"]:
        if entry["kind"] == "image":
            audio_split.setdefault(entry["audio"], set()).add(entry["split"])
    assert all(len(s) == 1 for s in audio_split.values())


@needs_font
def test_build_audio_format_and_silence(built):
    root, _ = built
    wavs = sorted((root / "Wav").glob("*/*.wav"))
    assert len(wavs) == 24 * len(CATEGORIES)
    loud = {}
    for path in wavs:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            SAMPLE_RATE,
            1,
            CLIP_SAMPLES,
            "PCM_16",
        )
        wave, _ = sf.read(path, dtype="float32")
        assert piano.silent_fraction(wave) <= 0.10, path.name
        assert 0.05 < np.max(np.abs(wave)) <= 0.951
        loud.setdefault(path.parent.name, []).append(float(np.sqrt(np.mean(wave**2))))
    # Character shows in the signal: the night sky is played softer than the city.
    assert np.median(loud["night_sky"]) < np.median(loud["city"])


@needs_font
def test_manifest_covers_every_file(built):
    root, _ = built
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    listed = {entry["path"]: entry for entry in manifest["files"]}
    on_disk = {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", ".conchshell-standin.json")
    }
    assert on_disk == set(listed)
    for path, entry in listed.items():
        assert _sha(root / path) == entry["sha256"], path
        if entry["kind"] == "image":
            assert entry["licence"] and entry["author"] and entry["package"], path
        if entry["kind"] == "audio":
            assert entry["corpus_path"] and entry["licence"], path


@needs_font
def test_load_bop_reads_the_build(built):
    from conchshell.datasets import load_bop

    root, summary = built
    train = load_bop(root, "train")
    val = load_bop(root, "val")
    assert len(train) == sum(summary.images["train"].values())
    assert len(val) == sum(summary.images["val"].values())
    assert list(train.categories) == [c.name for c in CATEGORIES]
    assert list(val.categories) == [c.name for c in CATEGORIES]
    image, wave, category = val[0]
    assert tuple(image.shape) == (3, 224, 224)
    assert tuple(wave.shape) == (CLIP_SAMPLES,)
    assert 0 <= int(category) < len(CATEGORIES)
    small = load_bop(root, "train", small=True)
    assert len(small) == sum(summary.originals["train"].values())


@pytest.mark.slow
@needs_font
def test_build_is_deterministic_and_reused(built, tmp_path):
    root, _ = built
    again = build_standin(root, seed=0)
    assert again.reused and again.seconds == 0.0
    with pytest.raises(FileExistsError, match="seed 0"):
        build_standin(root, seed=1)

    twin = build_standin(tmp_path / "twin", seed=0)
    assert not twin.reused
    for path in list(root.rglob("*.jpg")) + list(root.rglob("*.wav")):
        relative = path.relative_to(root)
        assert _sha(path) == _sha(tmp_path / "twin" / relative), relative

    other = build_standin(tmp_path / "twin", seed=1, force=True)
    assert other.seed == 1
    names = {str(p.relative_to(root)) for p in root.rglob("*.jpg")}
    other_names = {
        str(p.relative_to(tmp_path / "twin")) for p in (tmp_path / "twin").rglob("*.jpg")
    }
    assert names != other_names  # another split
    # An incomplete stand-in (a file deleted) is rebuilt, not reused.
    victim = next((tmp_path / "twin" / "Wav" / "city").glob("*.wav"))
    victim.unlink()
    repaired = build_standin(tmp_path / "twin", seed=1)
    assert not repaired.reused and victim.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def _derive_module():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "derive_standin.py"
    spec = importlib.util.spec_from_file_location("derive_standin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rcc_blob(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A version-1 Qt resource archive holding /res/<name> files (optionally zlib'd)."""
    import struct
    import zlib

    names = b""
    name_offsets = {}
    for name in ["res", *files]:
        name_offsets[name] = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
    data = b""
    data_offsets = {}
    for name, (payload, compress) in files.items():
        stored = struct.pack(">I", len(payload)) + zlib.compress(payload) if compress else payload
        data_offsets[name] = len(data)
        data += struct.pack(">I", len(stored)) + stored
    tree = struct.pack(">iHii", 0, 2, 1, 1)  # root: one child, index 1
    tree += struct.pack(">iHii", name_offsets["res"], 2, len(files), 2)
    for name, (_, compress) in files.items():
        tree += struct.pack(
            ">iHhhi", name_offsets[name], 1 if compress else 0, 0, 0, data_offsets[name]
        )
    header_size = 20
    tree_offset = header_size
    data_offset = tree_offset + len(tree)
    names_offset = data_offset + len(data)
    header = b"qres" + struct.pack(">iiii", 1, tree_offset, data_offset, names_offset)
    return header + tree + data + names


def test_derive_helpers_read_package_formats():
    derive = _derive_module()
    blob = _rcc_blob({"a.txt": (b"hello", False), "b.bin": (b"x" * 100, True)})
    assert derive.read_rcc(blob) == {"/res/a.txt": b"hello", "/res/b.bin": b"x" * 100}
    with pytest.raises(ValueError, match="not a Qt resource archive"):
        derive.read_rcc(b"nope" + blob[4:])

    readme = (
        "Copyright: Ann\nLicense: CC0-1.0\nSource: https://example.org/a.jpg\n"
        "Files:\nusa/a.webp\n\nCopyright: Bob\nLicense: Public Domain\nFiles:\nfrance/b.webp\n"
    )
    assert derive.parse_gcompris_readme(readme) == {
        "usa/a.webp": ("Ann", "CC0-1.0", "https://example.org/a.jpg"),
        "france/b.webp": ("Bob", "Public Domain", ""),
    }
    # The details activity lists bare file names and credits the photograph in a comment.
    details = (
        "Copyright: 2000, 2008 Bruno Coudoin and others\nLicense: CC-BY-SA 4.0\n"
        "Tower_0.webp\nTower_background.webp\nComment: based on a photo by Dee, "
        "license CC-BY-SA 3.0, source at https://example.org/t.jpg\n\n"
        "Copyright: Eve\nLicense: GPLv3\npainting.webp\n"
    )
    credit = (
        "Dee (photo); 2000, 2008 Bruno Coudoin and others (GCompris)",
        "CC-BY-SA 3.0 (photo); CC-BY-SA 4.0 (GCompris derivative)",
        "https://example.org/t.jpg",
    )
    assert derive.parse_gcompris_readme(details) == {
        "Tower_0.webp": credit,
        "Tower_background.webp": credit,
    }
    # Credits come from the nearest README above a file that names it.
    archive = {
        "/res/README": readme.encode(),
        "/res/fish/README": b"Copyright: Cy\nLicense: CC0-1.0\nFiles: f.webp\n",
    }
    cache: dict = {}
    assert derive.gcompris_credit(archive, "/res/usa/a.webp", cache)[0] == "Ann"
    assert derive.gcompris_credit(archive, "/res/fish/f.webp", cache) == ("Cy", "CC0-1.0", "")
    with pytest.raises(KeyError, match="no README"):
        derive.gcompris_credit(archive, "/res/fish/g.webp", cache)
    # Stellarium's textures.json is not strict JSON (numbers like -.97).
    textures = (
        '{"subTiles": [{"imageCredits": {"short": "ESO"}, "imageUrl": "n1.png", '
        '"worldCoords": [[[1,-.97]]]}, {"imageCredits" : {"Short": "NASA"},"imageUrl":"m2.png"}]}'
    )
    assert derive.stellarium_credits(textures) == {"n1.png": "ESO", "m2.png": "NASA"}


def test_derive_thumbnail_fills_transparent_sky():
    import io

    from PIL import Image

    derive = _derive_module()
    tile = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    tile.paste((20, 120, 20, 255), (0, 100, 300, 200))  # opaque ground, transparent sky
    buffer = io.BytesIO()
    tile.save(buffer, format="PNG")
    jpeg = derive.square_thumbnail(buffer.getvalue(), (214, 220, 226))
    out = Image.open(io.BytesIO(jpeg))
    assert out.format == "JPEG" and out.size == (256, 256) and out.mode == "RGB"
    sky = np.asarray(out)[10, 128].astype(int)
    ground = np.asarray(out)[245, 128].astype(int)
    assert np.abs(sky - [214, 220, 226]).max() <= 3
    assert np.abs(ground - [20, 120, 20]).max() <= 6
