"""A corpus of bad inputs across the library, one parametrized test over all of them.

Each case feeds one bad input (an image, a clip, a dataset, a checkpoint or
model folder, a command line, a MOS submission, or an output folder that
cannot be written) and states what it must get: an exception of a given type
whose message names the problem (raised by conchshell's own code, never from
deep inside torch, PIL or soundfile), an exit status 2 with a one-line message
and no traceback, or an HTTP status with a readable message. After every case
no temporary or partial file may be left anywhere under the test's folder.

The generated files are written into ``tmp_path`` by each case; nothing is
committed. ``CASES`` is the table the reliability note counts.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers_data import make_bop, write_image, write_tone
from PIL import Image
from safetensors.torch import save_file
from test_mos_fixtures import make_samples

from conchshell import presets
from conchshell.cli import main as cli_main
from conchshell.codec.checkpoint import load_jukebox_checkpoint
from conchshell.codec.jukebox import JukeboxCodec
from conchshell.data.audio import load_audio, prepare_waveform
from conchshell.data.images import load_image, to_image_batch
from conchshell.datasets import load_bop, load_pairs, make_toy_dataset
from conchshell.estimator import ImageToMusic
from conchshell.io import load_tree, save_tree
from conchshell.mos import make_app
from conchshell.video.i3d import I3DExtractor

pytestmark = pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning")


@dataclass(frozen=True)
class Bad:
    """One bad input: what to run and what it must get."""

    id: str
    kind: str  # image | audio | dataset | checkpoint | cli | mos | output
    run: Callable[[Path, dict], object]
    expect: type[BaseException] | int  # exception type, or exit/HTTP status
    match: str  # regex the message must contain
    needs: tuple[str, ...] = ()  # shared material: "model", "mos", "ckpt"


# -------------------------------------------------------------- shared material
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    presets.conchshell("tiny", level="high", random_state=0, verbose=0).initialize().save(folder)
    return folder


@pytest.fixture(scope="module")
def model(model_dir) -> ImageToMusic:
    return ImageToMusic.load(model_dir)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """A checkpoint folder from one GAN step of the tiny preset."""
    folder = tmp_path_factory.mktemp("ckpt")
    toy = make_toy_dataset(n_per_category=1, n_samples=16000, random_state=0)
    _tiny_resumer(folder, max_steps=1).fit(toy)
    return folder


def _tiny_resumer(folder: Path, **params) -> ImageToMusic:
    params.setdefault("max_steps", 2)
    return presets.conchshell(
        "tiny", level="high", random_state=0, verbose=0, checkpoint_dir=folder, **params
    )


def _resume_with(tmp: Path, ctx: dict, **params):
    folder = _copy_model(ctx["checkpoints"], tmp / "ckpt")
    toy = make_toy_dataset(n_per_category=1, n_samples=16000, random_state=0)
    return _tiny_resumer(folder).set_params(**params).fit(toy, resume=True)


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _png(tmp: Path, name: str = "ok.png") -> Path:
    return write_image(tmp / name)


def _cli(args: list[str]) -> tuple[int, str]:
    """Run ``conchshell ARGS`` in-process: (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli_main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            status = exc.code
    return status, err.getvalue()


def _post(app, fields: list[tuple[str, str]], headers: dict | None = None) -> tuple[int, str]:
    """POST /rate straight into the WSGI app: (status, body)."""
    body = urlencode(fields).encode()
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD="POST",
        PATH_INFO="/rate",
        CONTENT_TYPE="application/x-www-form-urlencoded",
        CONTENT_LENGTH=str(len(body)),
        **{"wsgi.input": io.BytesIO(body)},
    )
    environ.update(headers or {})
    status: list[str] = []
    chunks = app(environ, lambda s, h, exc_info=None: status.append(s))
    return int(status[0].split()[0]), b"".join(chunks).decode()


def _mos(tmp: Path):
    samples = make_samples(tmp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = make_app(samples, tmp / "ratings.sqlite3")
    item = next(s.id for s in app.index.values() if s.model == "alpha")
    return app, item


def _rating(item: str, rater="ann", pass_="1", i2m="3", melody="3", noise="3"):
    return [
        ("rater", rater),
        ("item", item),
        ("pass", pass_),
        ("i2m", i2m),
        ("melody", melody),
        ("noise", noise),
    ]


# ------------------------------------------------------------------ the cases
def _truncated_png(tmp, _):
    path = _png(tmp)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return load_image(path)


def _truncated_jpeg(tmp, _):
    path = tmp / "photo.jpg"
    Image.new("RGB", (300, 300), (10, 80, 200)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return load_image(path)


def _text_as_png(tmp, _):
    path = tmp / "notes.png"
    path.write_text("not a picture")
    return load_image(path)


def _decompression_bomb(tmp, _):
    path = tmp / "bomb.png"
    Image.new("1", (15000, 15000)).save(path)  # 225 Mpx of zeros: a few kB on disk
    return load_image(path)


def _nan_pixels(tmp, _):
    return load_image(np.full((20, 20, 3), np.nan, dtype=np.float32))


def _seven_channels(tmp, _):
    return load_image(np.zeros((10, 10, 7), dtype=np.uint8))


def _empty_image(tmp, _):
    return load_image(np.zeros((0, 10, 3), dtype=np.uint8))


def _two_channel_batch(tmp, _):
    return to_image_batch(torch.zeros(1, 2, 224, 224))


def _inf_in_batch(tmp, _):
    batch = torch.zeros(1, 3, 224, 224)
    batch[0, 1, 2, 3] = float("inf")
    return to_image_batch(batch)


def _bytes_as_image(tmp, _):
    return load_image(b"\x89PNG\r\n")


def _empty_image_list(tmp, _):
    return to_image_batch([])


def _truncated_wav(tmp, _):
    path = write_tone(tmp / "clip.wav", seconds=0.5)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return load_audio(path)


def _text_as_wav(tmp, _):
    path = tmp / "clip.wav"
    path.write_text("RIFF? no.")
    return load_audio(path)


def _nan_samples_in_file(tmp, _):
    wave = np.zeros(1600, dtype=np.float32)
    wave[5] = np.nan
    sf.write(tmp / "nan.wav", wave, 16000, subtype="FLOAT")
    return load_audio(tmp / "nan.wav")


def _zero_length_wav(tmp, _):
    sf.write(tmp / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    return load_audio(tmp / "empty.wav")


def _silent_clip(tmp, _):
    return prepare_waveform(np.zeros(16000, dtype=np.float32), 16000)


def _zero_rate(tmp, _):
    return prepare_waveform(np.ones(100, dtype=np.float32), 0)


def _three_dim_audio(tmp, _):
    return prepare_waveform(np.zeros((2, 2, 100), dtype=np.float32), 16000)


def _transposed_audio(tmp, _):
    return prepare_waveform(np.random.default_rng(0).standard_normal((16000, 2)), 16000)


def _complex_audio(tmp, _):
    return prepare_waveform(np.zeros(100, dtype=np.complex64), 16000)


def _audio_folder(tmp, _):
    return load_audio(tmp)


def _csv_not_utf8(tmp, _):
    path = tmp / "pairs.csv"
    path.write_bytes(bytes(range(256)))
    return load_pairs(path)


def _csv_header_only(tmp, _):
    path = tmp / "pairs.csv"
    path.write_text("image,audio,category\n")
    return load_pairs(path)


def _csv_missing_file(tmp, _):
    png = _png(tmp)
    path = tmp / "pairs.csv"
    path.write_text(f"image,audio,category\n{png},{tmp / 'gone.wav'},coast\n")
    return load_pairs(path)


def _csv_corrupt_image(tmp, _):
    bad = tmp / "bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    wav = write_tone(tmp / "a.wav")
    path = tmp / "pairs.csv"
    path.write_text(f"image,audio,category\n{bad},{wav},coast\n{_png(tmp)},{wav},deep\n")
    return load_pairs(path)[0]


def _bop_root_is_a_file(tmp, _):
    return load_bop(_png(tmp), "train")


def _bop_unknown_split(tmp, _):
    return load_bop(tmp, "test")


def _fit_images_without_audio(tmp, _):
    return presets.conchshell("tiny", level="high", verbose=0).fit(torch.zeros(2, 3, 224, 224))


def _fit_mismatched_lengths(tmp, _):
    est = presets.conchshell("tiny", level="high", verbose=0)
    return est.fit(torch.zeros(2, 3, 224, 224), audio=np.zeros((3, 16000)), categories=[0, 1])


def _fit_negative_category(tmp, _):
    est = presets.conchshell("tiny", level="high", verbose=0)
    return est.fit(torch.zeros(2, 3, 224, 224), audio=np.ones((2, 16000)), categories=[-1, 0])


def _truncated_tree(tmp, _):
    path = tmp / "state.safetensors"
    save_tree(path, {"w": torch.zeros(100)})
    path.write_bytes(path.read_bytes()[:-50])
    return load_tree(path)


def _foreign_safetensors(tmp, _):
    save_file({"w": torch.zeros(3)}, tmp / "foreign.safetensors")
    return load_tree(tmp / "foreign.safetensors")


def _dangling_tensor_reference(tmp, _):
    meta = {"conchshell_tree": json.dumps({"__tensor__": "7"})}
    save_file({"0": torch.zeros(3)}, tmp / "dangling.safetensors", metadata=meta)
    return load_tree(tmp / "dangling.safetensors")


def _huge_header(tmp, _):
    (tmp / "huge.safetensors").write_bytes((10**15).to_bytes(8, "little") + b"{}")
    return load_tree(tmp / "huge.safetensors")


def _jukebox_wrong_keys(tmp, _):
    torch.save({"model": {"foo": torch.zeros(1)}}, tmp / "vqvae.pth.tar")
    return JukeboxCodec.sized("tiny", weights=tmp / "vqvae.pth.tar").initialize()


def _jukebox_truncated(tmp, _):
    torch.save({"model": {"k": torch.zeros(1000)}}, tmp / "vqvae.pth.tar")
    data = (tmp / "vqvae.pth.tar").read_bytes()
    (tmp / "vqvae.pth.tar").write_bytes(data[:300])
    return load_jukebox_checkpoint(tmp / "vqvae.pth.tar")


def _i3d_wrong_format(tmp, _):
    torch.save({"state_dict": {}}, tmp / "i3d.pyth")
    return I3DExtractor(weights=tmp / "i3d.pyth", width=8).initialize()


def _model_params_tampered(tmp, ctx):
    folder = _copy_model(ctx["model_dir"], tmp / "m")
    meta = json.loads((folder / "params.json").read_text())
    meta["estimator"]["params"]["nonsense"] = 1
    (folder / "params.json").write_text(json.dumps(meta))
    return ImageToMusic.load(folder)


def _model_weights_of_another_size(tmp, ctx):
    folder = _copy_model(ctx["model_dir"], tmp / "m")
    meta = json.loads((folder / "params.json").read_text())
    meta["estimator"]["fitted"]["generator"]["params"]["embed_dim"] = 7
    (folder / "params.json").write_text(json.dumps(meta))
    return ImageToMusic.load(folder)


def _model_params_not_a_dict(tmp, ctx):
    folder = _copy_model(ctx["model_dir"], tmp / "m")
    (folder / "params.json").write_text("[1, 2]")
    return ImageToMusic.load(folder)


def _model_history_corrupt(tmp, ctx):
    folder = _copy_model(ctx["model_dir"], tmp / "m")
    (folder / "history.json").write_text("{")
    return ImageToMusic.load(folder)


def _resume_other_generator(tmp, ctx):
    return _resume_with(tmp, ctx, generator__embed_dim=8)


def _resume_other_encoder(tmp, ctx):
    return _resume_with(tmp, ctx, encoder__n_blocks=18)


def _predict_unknown_category(tmp, ctx):
    return ctx["model"].predict(torch.zeros(1, 3, 224, 224), categories=["volcano"])


def _predict_zero_batch_size(tmp, ctx):
    return ctx["model"].predict(torch.zeros(1, 3, 224, 224), batch_size=0)


def _generate_path_traversal_name(tmp, ctx):
    return ctx["model"].generate_files([torch.zeros(3, 224, 224)], tmp / "out", names=["../x"])


def _generate_duplicate_names(tmp, ctx):
    images = [_png(tmp, "a.png"), write_image(tmp / "b" / "a.png")]  # same stem "a"
    return ctx["model"].generate_files([str(p) for p in images], tmp / "out")


def _predict_corrupt_image_args(tmp, ctx):
    (tmp / "bad.png").write_bytes(b"\x89PNG x")
    return ["predict", ctx["model_dir"], tmp / "bad.png", "-o", tmp / "o"]


def _edit_params(folder: Path, edit: Callable[[dict], object]) -> None:
    meta = json.loads((folder / "params.json").read_text())
    edit(meta)
    (folder / "params.json").write_text(json.dumps(meta))


def _model_class_entry(target: str):
    def run(tmp, ctx):
        # Were the entry called, it would write this file (and the case would fail on it).
        victim = tmp / "out" / "written-by-the-attacker"
        folder = _copy_model(ctx["model_dir"], tmp / "m")
        spec = {"class": target, "params": {"path": str(victim), "tree": {}}}
        _edit_params(folder, lambda m: m["estimator"]["fitted"].update(encoder=spec))
        return ImageToMusic.load(folder)

    return run


def _model_params_binary(tmp, ctx):
    folder = _copy_model(ctx["model_dir"], tmp / "m")
    (folder / "params.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    return ImageToMusic.load(folder)


def _model_level_banana(tmp, ctx):
    folder = _copy_model(ctx["model_dir"], tmp / "m")
    _edit_params(folder, lambda m: m.update(level="banana"))
    return ImageToMusic.load(folder)


def _model_nan_weights(tmp, ctx):
    folder = _copy_model(ctx["model_dir"], tmp / "m")
    tree = load_tree(folder / "model.safetensors")
    key = next(iter(tree["generator"]))
    tree["generator"][key] = torch.full_like(tree["generator"][key], float("nan"))
    save_tree(folder / "model.safetensors", tree)
    return ImageToMusic.load(folder)


def _fresh_fit_into_used_checkpoints(tmp, ctx):
    folder = _copy_model(ctx["checkpoints"], tmp / "ckpt")
    toy = make_toy_dataset(n_per_category=1, n_samples=16000, random_state=0)
    return _tiny_resumer(folder).fit(toy)  # no resume=True: must not continue the old run


def _generate_over_existing_file(tmp, ctx):
    photo = _png(tmp, "beach.png")
    (tmp / "music").mkdir()
    (tmp / "music" / "beach.wav").write_bytes(b"mine")
    return ctx["model"].generate_files([photo], tmp / "music")


def _generate_over_input_image(tmp, ctx):
    photo = _png(tmp, "beach.png")
    return ctx["model"].generate_files([photo], tmp, overwrite=True)


def _generate_into_a_file(tmp, ctx):
    (tmp / "music").write_text("a file, not a folder")
    return ctx["model"].generate_files([torch.zeros(3, 224, 224)], tmp / "music")


def _pairs_with_audio(tmp, write) -> Path:
    """A pairs CSV whose second and third rows use the clip ``write`` makes."""
    png, good = _png(tmp), write_tone(tmp / "good.wav")
    bad = write(tmp / "bad.wav")
    path = tmp / "pairs.csv"
    path.write_text(f"image,audio,category\n{png},{good},x\n{png},{bad},x\n{png},{bad},y\n")
    return path


def _nan_wav(path: Path) -> Path:
    wave = np.full(1600, 0.1, dtype=np.float32)
    wave[1000] = np.nan
    sf.write(path, wave, 16000, subtype="FLOAT")
    return path


def _csv_corrupt_wav(tmp, _):
    return load_pairs(_pairs_with_audio(tmp, lambda p: (p.write_bytes(b"RIFF\0\0junk"), p)[1]))


def _csv_empty_wav(tmp, _):
    return load_pairs(_pairs_with_audio(tmp, lambda p: (p.write_bytes(b""), p)[1]))


def _csv_nan_wav(tmp, _):
    return load_pairs(_pairs_with_audio(tmp, _nan_wav))


def _bop_nan_wav(tmp, _):
    root = make_bop(tmp / "BOP", npy=False)
    _nan_wav(root / "Wav" / "ocean" / "o0.wav")
    return load_bop(root, "train")


def _cli_case(args: Callable[[Path, dict], list]):
    return lambda tmp, ctx: _cli(args(tmp, ctx))


CASES = [
    # images
    Bad("truncated-png", "image", _truncated_png, ValueError, r"ok\.png.*(truncated|cannot)"),
    Bad("truncated-jpeg", "image", _truncated_jpeg, ValueError, r"photo\.jpg.*truncated"),
    Bad("text-named-png", "image", _text_as_png, ValueError, r"notes\.png.*not an image"),
    Bad("decompression-bomb", "image", _decompression_bomb, ValueError, r"bomb\.png.*bomb"),
    Bad("nan-pixels", "image", _nan_pixels, ValueError, "NaN or infinite"),
    Bad("seven-channels", "image", _seven_channels, ValueError, r"C in 1, 3, 4; got"),
    Bad("empty-image", "image", _empty_image, ValueError, r"image is empty"),
    Bad("two-channel-batch", "image", _two_channel_batch, ValueError, r"dimension 1 is 2"),
    Bad("inf-in-batch", "image", _inf_in_batch, ValueError, "NaN or infinite"),
    Bad("bytes-as-image", "image", _bytes_as_image, TypeError, "got bytes"),
    Bad(
        "bytes-path-image-batch",
        "image",
        lambda t, c: to_image_batch(b"x.jpg"),
        TypeError,
        r"images must be .*, got bytes: b'x\.jpg' \(a path: decode it with os\.fsdecode",
    ),
    Bad("empty-image-list", "image", _empty_image_list, ValueError, "at least one image"),
    # audio
    Bad("truncated-wav", "audio", _truncated_wav, ValueError, r"clip\.wav.*truncated"),
    Bad("text-named-wav", "audio", _text_as_wav, ValueError, r"clip\.wav"),
    Bad("nan-samples", "audio", _nan_samples_in_file, ValueError, r"nan\.wav.*NaN"),
    Bad("zero-length-wav", "audio", _zero_length_wav, ValueError, r"empty\.wav.*no samples"),
    Bad("silent-clip", "audio", _silent_clip, ValueError, r"silent"),
    Bad("zero-sample-rate", "audio", _zero_rate, ValueError, r"sr must be a positive"),
    Bad("three-dim-audio", "audio", _three_dim_audio, ValueError, r"\(channels, samples\)"),
    Bad("transposed-audio", "audio", _transposed_audio, ValueError, r"channels_first=False"),
    Bad("complex-audio", "audio", _complex_audio, TypeError, r"real numeric"),
    Bad("folder-as-audio", "audio", _audio_folder, ValueError, r"is not a file"),
    # datasets
    Bad("csv-not-utf8", "dataset", _csv_not_utf8, ValueError, r"pairs\.csv.*not UTF-8"),
    Bad("csv-header-only", "dataset", _csv_header_only, ValueError, r"header but no rows"),
    Bad("csv-missing-file", "dataset", _csv_missing_file, FileNotFoundError, r"gone\.wav"),
    Bad("csv-corrupt-image", "dataset", _csv_corrupt_image, ValueError, r"bad\.png"),
    Bad("bop-root-is-file", "dataset", _bop_root_is_a_file, FileNotFoundError, r"ok\.png"),
    Bad("bop-unknown-split", "dataset", _bop_unknown_split, ValueError, r"got 'test'"),
    Bad(
        "csv-corrupt-wav",
        "dataset",
        _csv_corrupt_wav,
        ValueError,
        r"pairs\.csv', lines 3, 4: cannot read audio file '.*bad\.wav'",
    ),
    Bad(
        "csv-empty-wav",
        "dataset",
        _csv_empty_wav,
        ValueError,
        r"pairs\.csv', lines 3, 4: audio file '.*bad\.wav' is empty \(0 bytes\)",
    ),
    Bad(
        "csv-nan-wav",
        "dataset",
        _csv_nan_wav,
        ValueError,
        r"pairs\.csv', lines 3, 4: audio file '.*bad\.wav' contains NaN or infinite samples "
        r"\(the first at frame 1000",
    ),
    Bad(
        "bop-nan-wav",
        "dataset",
        _bop_nan_wav,
        ValueError,
        r"'train' split of BOP '.*BOP', Label\.xlsx rows? [\d, ]+: audio file '.*o0\.wav' "
        r"contains NaN",
    ),
    Bad(
        "bytes-path-load-bop",
        "dataset",
        lambda t, c: load_bop(b"BOP"),
        TypeError,
        r"root must be a str or a path, got bytes: b'BOP'",
    ),
    Bad(
        "bytes-path-load-pairs",
        "dataset",
        lambda t, c: load_pairs(b"pairs.csv"),
        TypeError,
        r"csv_path must be a str or a path, got bytes: b'pairs\.csv'",
    ),
    Bad("fit-no-audio", "dataset", _fit_images_without_audio, ValueError, r"need their audio"),
    Bad("fit-length-mismatch", "dataset", _fit_mismatched_lengths, ValueError, r"2 items.*3"),
    Bad("fit-negative-category", "dataset", _fit_negative_category, ValueError, r"\[-1\]"),
    # checkpoints and model folders
    Bad("truncated-tree", "checkpoint", _truncated_tree, ValueError, r"state\.safetensors"),
    Bad("foreign-safetensors", "checkpoint", _foreign_safetensors, ValueError, r"foreign"),
    Bad("dangling-tensor", "checkpoint", _dangling_tensor_reference, ValueError, r"dangling"),
    Bad("huge-header", "checkpoint", _huge_header, ValueError, r"huge.*header too large"),
    Bad("jukebox-wrong-keys", "checkpoint", _jukebox_wrong_keys, ValueError, r"missing keys"),
    Bad("jukebox-truncated", "checkpoint", _jukebox_truncated, ValueError, r"truncated"),
    Bad("i3d-wrong-format", "checkpoint", _i3d_wrong_format, ValueError, r"'model_state'"),
    Bad(
        "model-params-tampered",
        "checkpoint",
        _model_params_tampered,
        ValueError,
        "nonsense",
        ("model",),
    ),
    Bad(
        "model-size-mismatch",
        "checkpoint",
        _model_weights_of_another_size,
        ValueError,
        "size",
        ("model",),
    ),
    Bad(
        "model-params-list",
        "checkpoint",
        _model_params_not_a_dict,
        ValueError,
        r"m holds",
        ("model",),
    ),
    Bad(
        "model-history-corrupt",
        "checkpoint",
        _model_history_corrupt,
        ValueError,
        "JSON",
        ("model",),
    ),
    Bad(
        "predict-unknown-cat",
        "checkpoint",
        _predict_unknown_category,
        ValueError,
        "volcano",
        ("model",),
    ),
    Bad(
        "predict-batch-zero",
        "checkpoint",
        _predict_zero_batch_size,
        ValueError,
        "batch_size",
        ("model",),
    ),
    Bad(
        "name-traversal",
        "output",
        _generate_path_traversal_name,
        ValueError,
        r"'\.\./x'",
        ("model",),
    ),
    Bad(
        "duplicate-names",
        "output",
        _generate_duplicate_names,
        ValueError,
        r"share the name",
        ("model",),
    ),
    Bad(
        "model-class-is-a-function",
        "checkpoint",
        _model_class_entry("conchshell.io.save_tree"),
        ValueError,
        r"params\.json entry 'fitted\.encoder' names 'conchshell\.io\.save_tree', which is not "
        r"a conchshell component class",
        ("model",),
    ),
    Bad(
        "model-class-module-missing",
        "checkpoint",
        _model_class_entry("conchshell.no_such_module.Thing"),
        ValueError,
        r"entry 'fitted\.encoder' names 'conchshell\.no_such_module\.Thing', which is not",
        ("model",),
    ),
    Bad(
        "model-params-binary",
        "checkpoint",
        _model_params_binary,
        ValueError,
        r"m/params\.json is not a UTF-8 text file",
        ("model",),
    ),
    Bad(
        "model-level-banana",
        "checkpoint",
        _model_level_banana,
        ValueError,
        r"params\.json: level 'banana' is not valid",
        ("model",),
    ),
    Bad(
        "model-nan-weights",
        "checkpoint",
        _model_nan_weights,
        ValueError,
        r"model\.safetensors: the generator's weights contain NaN or infinite values \(in '",
        ("model",),
    ),
    Bad(
        "bytes-path-load",
        "checkpoint",
        lambda t, c: ImageToMusic.load(bytes(c["model_dir"])),
        TypeError,
        r"path must be a str or a path, got bytes: b'",
        ("model",),
    ),
    Bad(
        "bytes-path-save",
        "output",
        lambda t, c: c["model"].save(b"saved-model"),
        TypeError,
        r"path must be a str or a path, got bytes: b'saved-model'",
        ("model",),
    ),
    Bad(
        "bytes-path-generate-images",
        "output",
        lambda t, c: c["model"].generate_files(b"x.jpg", t / "out"),
        TypeError,
        r"images must be .*, got bytes: b'x\.jpg'",
        ("model",),
    ),
    Bad(
        "bytes-path-generate-out-dir",
        "output",
        lambda t, c: c["model"].generate_files([torch.zeros(3, 224, 224)], b"out"),
        TypeError,
        r"out_dir must be a str or a path, got bytes: b'out'",
        ("model",),
    ),
    Bad(
        "out-dir-is-a-file",
        "output",
        _generate_into_a_file,
        FileExistsError,
        r"out_dir .*music is a file, not a folder",
        ("model",),
    ),
    Bad(
        "generate-over-existing-file",
        "output",
        _generate_over_existing_file,
        FileExistsError,
        r"music/beach\.wav already exists; pass overwrite=True",
        ("model",),
    ),
    Bad(
        "generate-over-input-image",
        "output",
        _generate_over_input_image,
        ValueError,
        r"beach\.png would overwrite the input image",
        ("model",),
    ),
    Bad(
        "fresh-fit-into-used-checkpoints",
        "checkpoint",
        _fresh_fit_into_used_checkpoints,
        ValueError,
        r"checkpoint_dir .*ckpt already holds checkpoints of a run \(stages\.safetensors, "
        r"step-000000001\.safetensors\); fit\(\.\.\., resume=True\) continues that run",
        ("ckpt",),
    ),
    Bad(
        "resume-other-run",
        "checkpoint",
        lambda t, c: _resume_with(t, c, random_state=1),
        ValueError,
        r"stages\.safetensors belongs to another run \(its random seed differ",
        ("ckpt",),
    ),
    Bad(
        "resume-other-generator",
        "checkpoint",
        _resume_other_generator,
        ValueError,
        r"stages\.safetensors belongs to another run \(its parameters differ",
        ("ckpt",),
    ),
    Bad(
        "resume-other-encoder",
        "checkpoint",
        _resume_other_encoder,
        ValueError,
        r"stages\.safetensors belongs to another run \(its parameters differ",
        ("ckpt",),
    ),
    # command line: exit status 2, one line, no traceback
    Bad("cli-no-subcommand", "cli", _cli_case(lambda t, c: []), 2, r"error:"),
    Bad("cli-unknown-command", "cli", _cli_case(lambda t, c: ["paint"]), 2, r"invalid choice"),
    Bad(
        "cli-fit-bad-set",
        "cli",
        _cli_case(
            lambda t, c: ["fit", "--size", "tiny", "--data", t, "--out", t / "o", "--set", "x"]
        ),
        2,
        r"--set takes key=value, got 'x'",
    ),
    Bad(
        "cli-fit-unknown-param",
        "cli",
        _cli_case(
            lambda t, c: [
                *("fit", "--size", "tiny", "--data", t, "--out", t / "o"),
                *("--set", "generator__nonsense=1"),
            ]
        ),
        2,
        r"--set: .*nonsense",
    ),
    Bad(
        "cli-fit-missing-data",
        "cli",
        _cli_case(lambda t, c: ["fit", "--size", "tiny", "--data", t / "nope", "--out", t / "o"]),
        2,
        r"nope",
    ),
    Bad(
        "cli-predict-no-model",
        "cli",
        _cli_case(lambda t, c: ["predict", t / "none", _png(t), "-o", t / "o"]),
        2,
        r"holds no conchshell model",
    ),
    Bad(
        "cli-predict-missing-image",
        "cli",
        _cli_case(lambda t, c: ["predict", c["model_dir"], t / "x.png", "-o", t / "o"]),
        2,
        r"image not found",
        ("model",),
    ),
    Bad(
        "cli-predict-corrupt-image",
        "cli",
        _cli_case(_predict_corrupt_image_args),
        2,
        r"bad\.png",
        ("model",),
    ),
    Bad(
        "cli-info-not-a-model",
        "cli",
        _cli_case(lambda t, c: ["info", t]),
        2,
        r"holds no conchshell model",
    ),
    Bad(
        "cli-mos-summary-missing",
        "cli",
        _cli_case(lambda t, c: ["mos", "summary", t / "none.sqlite3"]),
        2,
        r"none",
    ),
    Bad(
        "cli-data-summary-missing",
        "cli",
        _cli_case(lambda t, c: ["data", "summary", t / "nowhere"]),
        2,
        r"nowhere",
    ),
    # MOS submissions, straight into the WSGI app
    Bad(
        "mos-score-out-of-range",
        "mos",
        lambda t, c: _post(c["mos"][0], _rating(c["mos"][1], i2m="9")),
        400,
        r"i2m must be between 1 and 5, got 9",
        ("mos",),
    ),
    Bad(
        "mos-unknown-item",
        "mos",
        lambda t, c: _post(c["mos"][0], _rating("../../etc/passwd")),
        404,
        r"Unknown item",
        ("mos",),
    ),
    Bad(
        "mos-conflicting-resubmission",
        "mos",
        lambda t, c: (
            _post(c["mos"][0], _rating(c["mos"][1], i2m="4")),
            _post(c["mos"][0], _rating(c["mos"][1], i2m="1")),
        )[1],
        409,
        r"the first rating is kept",
        ("mos",),
    ),
    Bad(
        "mos-cross-site-post",
        "mos",
        lambda t, c: _post(
            c["mos"][0], _rating(c["mos"][1]), {"HTTP_SEC_FETCH_SITE": "cross-site"}
        ),
        403,
        r"Cross-site form posts are refused",
        ("mos",),
    ),
    Bad(
        "mos-script-in-score",
        "mos",
        lambda t, c: _post(c["mos"][0], _rating(c["mos"][1], melody="<script>x</script>")),
        400,
        r"melody must be a whole number.*&lt;script&gt;",
        ("mos",),
    ),
    Bad(
        "mos-missing-samples",
        "mos",
        lambda t, c: make_app(t / "no-samples"),
        FileNotFoundError,
        r"no-samples.*does not exist",
    ),
]

_IDS = [case.id for case in CASES]
assert len(set(_IDS)) == len(_IDS)


def _raised_in_conchshell(exc: BaseException) -> bool:
    """Whether the innermost frame of the traceback is the library's own code."""
    last = traceback.extract_tb(exc.__traceback__)[-1]
    return "/conchshell/" in last.filename.replace("\\", "/")


@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_bad_input_gets_a_clear_answer(case, tmp_path, request):
    ctx: dict = {}
    if "model" in case.needs:
        ctx["model_dir"] = request.getfixturevalue("model_dir")
        ctx["model"] = request.getfixturevalue("model")
    if "mos" in case.needs:
        ctx["mos"] = _mos(tmp_path)
    if "ckpt" in case.needs:
        ctx["checkpoints"] = request.getfixturevalue("checkpoints")

    if isinstance(case.expect, type):
        with pytest.raises(case.expect) as info, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.run(tmp_path, ctx)
        assert re.search(case.match, str(info.value), re.S), str(info.value)
        # Raised by the library, naming the problem: not an error from torch/PIL internals.
        assert _raised_in_conchshell(info.value), traceback.format_exception(info.value)
    elif case.kind == "cli":
        status, err = case.run(tmp_path, ctx)
        assert status == case.expect, err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert re.match(r"conchshell[\w ]*: error: ", lines[-1]), err
        assert re.search(case.match, lines[-1]), err
        if "usage:" not in err:
            assert len(lines) == 1, err  # the library's own errors: exactly one line
    else:  # MOS: an HTTP status and a readable, escaped page
        status, body = case.run(tmp_path, ctx)
        assert status == case.expect, body
        assert re.search(case.match, body, re.S), body
        assert "<script>" not in body and "Traceback" not in body

    # Never a temporary or half-written file left behind, and no output written.
    assert [p for p in tmp_path.rglob("*") if ".tmp" in p.name] == []
    for out in (tmp_path / "o", tmp_path / "out"):
        assert not out.exists() or not any(out.iterdir())


def test_the_corpus_covers_every_kind():
    kinds = {case.kind for case in CASES}
    assert kinds == {"image", "audio", "dataset", "checkpoint", "cli", "mos", "output"}
    assert len(CASES) >= 30
