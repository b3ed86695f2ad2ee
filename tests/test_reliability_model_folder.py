"""A model folder runs no code, a fresh fit never resumes another run, and a save or a
damaged checkpoint never costs the model or the run what it had (issue 18)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator

from conchshell import presets
from conchshell.cli import main
from conchshell.datasets import make_toy_dataset
from conchshell.estimator import ImageToMusic
from conchshell.persistence import component_classes

pytestmark = pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning")


@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset(n_per_category=1, n_samples=16000, random_state=0)


def tiny(**params):
    params = {"level": "high", "random_state": 0, "verbose": 0, **params}
    return presets.conchshell("tiny", **params)


@pytest.fixture(scope="module")
def saved(toy, tmp_path_factory):
    return tiny().fit(toy).save(tmp_path_factory.mktemp("saved") / "model")


def _copy(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "model")


def _edit_params(folder, edit):
    meta = json.loads((folder / "params.json").read_text())
    edit(meta)
    (folder / "params.json").write_text(json.dumps(meta))


# ------------------------------------------------------------- a folder runs no code
def test_the_registry_holds_only_conchshell_estimator_classes():
    classes = component_classes()
    assert "conchshell.estimator.ImageToMusic" in classes
    for path, cls in classes.items():
        assert isinstance(cls, type) and issubclass(cls, BaseEstimator), path
        assert cls.__module__.startswith("conchshell.") and path.endswith(cls.__qualname__)


@pytest.mark.parametrize(
    ("entry", "target"),
    [
        ("fitted.encoder", "conchshell.io.save_tree"),
        ("estimator", "conchshell.io.save_tree"),
        ("fitted.codec", "conchshell.datasets.make_toy_dataset"),
        ("fitted.encoder", "conchshell.no_such_module.Thing"),
        ("fitted.encoder", "builtins.eval"),
    ],
)
def test_a_tampered_class_entry_is_refused_and_never_called(saved, tmp_path, entry, target):
    folder = _copy(saved, tmp_path)
    victim = tmp_path / "written-by-the-attacker"

    def edit(meta):
        spec = {"class": target, "params": {"path": str(victim), "tree": {}}}
        if entry == "estimator":
            meta["estimator"].update(spec)
        else:
            meta["estimator"]["fitted"][entry.split(".")[1]] = spec

    _edit_params(folder, edit)
    with pytest.raises(ValueError, match=rf"entry '{entry}' names '{target}', which is not"):
        ImageToMusic.load(folder)
    assert not victim.exists()


def test_the_cli_refuses_a_tampered_folder_without_a_traceback(saved, tmp_path, capsys):
    folder = _copy(saved, tmp_path)
    victim = tmp_path / "written-by-the-attacker"
    _edit_params(
        folder,
        lambda m: m["estimator"]["fitted"].update(
            encoder={"class": "conchshell.io.save_tree", "params": {"path": str(victim)}}
        ),
    )
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 120, 40)).save(photo)
    code = main(["predict", str(folder), str(photo), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "not a conchshell component class" in err and "Traceback" not in err
    assert not victim.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not a UTF-8 text file"),
        (b'{"library": "conchshell", "level": "banana"}', "level 'banana' is not valid"),
    ],
)
def test_an_unreadable_params_file_is_named(saved, tmp_path, content, message):
    folder = _copy(saved, tmp_path)
    (folder / "params.json").write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        ImageToMusic.load(folder)
    assert "params.json" in str(info.value)


def test_level_banana_inside_a_valid_file_is_named(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    _edit_params(folder, lambda m: m.update(level="banana"))
    with pytest.raises(ValueError, match=r"params\.json: level 'banana' is not valid"):
        ImageToMusic.load(folder)


def test_nan_weights_are_refused_at_load_naming_the_component(saved, tmp_path):
    from conchshell.io import load_tree, save_tree

    folder = _copy(saved, tmp_path)
    tree = load_tree(folder / "model.safetensors")
    key = next(iter(tree["generator"]))
    tree["generator"][key] = torch.full_like(tree["generator"][key], float("nan"))
    save_tree(folder / "model.safetensors", tree)
    with pytest.raises(ValueError, match=rf"the generator's weights contain NaN.*{key}"):
        ImageToMusic.load(folder)


def test_a_bytes_path_is_a_clear_type_error(saved):
    with pytest.raises(TypeError, match="path must be a str or a path, got bytes"):
        ImageToMusic.load(bytes(saved))


# ------------------------------------------------- a fresh fit never resumes an old run
def test_a_fresh_fit_refuses_a_folder_holding_another_runs_checkpoints(toy, tmp_path):
    tiny(checkpoint_dir=tmp_path, max_steps=4, checkpoint_every=1).fit(toy)
    with pytest.raises(ValueError, match=r"already holds checkpoints of a run.*resume=True"):
        tiny(checkpoint_dir=tmp_path, random_state=1).fit(toy)


def test_resume_refuses_the_checkpoints_of_another_run(toy, tmp_path):
    tiny(checkpoint_dir=tmp_path, max_steps=2).fit(toy)
    with pytest.raises(ValueError, match=r"belongs to another run \(its random seed differ"):
        tiny(random_state=1, checkpoint_dir=tmp_path, max_steps=4).fit(toy, resume=True)
    other = make_toy_dataset(n_per_category=1, n_samples=16000, random_state=5)
    with pytest.raises(ValueError, match=r"its training data differ"):
        tiny(checkpoint_dir=tmp_path, max_steps=4).fit(other, resume=True)


def test_resume_may_extend_the_run(toy, tmp_path):
    # max_steps is not part of a run's identity: a finished run can be trained on.
    tiny(checkpoint_dir=tmp_path, max_steps=2).fit(toy)
    model = tiny(checkpoint_dir=tmp_path, max_steps=3).fit(toy, resume=True)
    assert [h["step"] for h in model.history_] == [1, 2, 3]


# ------------------------------------------------------- damaged checkpoint data
def test_a_checkpoint_with_damaged_data_falls_back_to_the_previous_one(toy, tmp_path):
    tiny(checkpoint_dir=tmp_path, max_steps=4, checkpoint_every=1, keep_checkpoints=2).fit(toy)
    newest = tmp_path / "step-000000004.safetensors"
    data = bytearray(newest.read_bytes())
    data[-3] ^= 0xFF  # the header is intact; one byte of tensor data is not
    newest.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=r"step-000000004\.safetensors is damaged.*checksum"):
        model = tiny(checkpoint_dir=tmp_path, max_steps=5, checkpoint_every=1).fit(toy, resume=True)
    assert [h["step"] for h in model.history_] == [1, 2, 3, 4, 5]


# ------------------------------------------------------- save never destroys a model
def test_a_failed_save_leaves_the_old_model_whole(toy, saved, tmp_path, monkeypatch):
    folder = _copy(saved, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    other = ImageToMusic.load(saved)
    other.categories_ = ["a", "b", "c", "d", "e", "f"]

    import conchshell.persistence as persistence

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(persistence, "save_history", full_disk)
    with pytest.raises(OSError, match="No space left"):
        other.save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_save_over_a_model_keeps_other_files_in_the_folder(toy, saved, tmp_path):
    folder = _copy(saved, tmp_path)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "keep.txt").write_text("mine")
    model = ImageToMusic.load(folder)
    model.categories_ = ["a", "b", "c", "d", "e", "f"]
    model.save(folder)
    assert ImageToMusic.load(folder).categories_ == ["a", "b", "c", "d", "e", "f"]
    assert (folder / "checkpoints" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_to_a_file_path_is_named(saved, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    model = ImageToMusic.load(saved)
    with pytest.raises(FileExistsError, match=rf"cannot save the model to {target}: it is a file"):
        model.save(target)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["before_exchange", "after_exchange"])
def test_a_save_killed_at_any_moment_leaves_one_whole_model(saved, tmp_path, moment):
    # A child process re-saves with other category names and is killed at ``moment``;
    # the folder then loads as the old model or the new one, never a mixture, and the
    # next save leaves no hidden folder behind.
    folder = _copy(saved, tmp_path)
    (folder / "checkpoints").mkdir()
    script = textwrap.dedent(
        f"""
        import os, signal
        import conchshell.persistence as p
        from conchshell.estimator import ImageToMusic
        model = ImageToMusic.load({str(folder)!r})
        model.categories_ = ["n1", "n2", "n3", "n4", "n5", "n6"]
        if {moment!r} == "before_exchange":
            real = p.save_history
            def killed(*a, **k):
                real(*a, **k)
                os.kill(os.getpid(), signal.SIGKILL)
            p.save_history = killed
        else:
            real = p._exchange
            def killed(*a, **k):
                real(*a, **k)
                os.kill(os.getpid(), signal.SIGKILL)
            p._exchange = killed
        model.save({str(folder)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    loaded = ImageToMusic.load(folder)
    old = json.loads((saved / "params.json").read_text())["categories"]
    expected = old if moment == "before_exchange" else ["n1", "n2", "n3", "n4", "n5", "n6"]
    assert loaded.categories_ == expected
    loaded.save(folder)  # finishes or undoes the killed save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (folder / "checkpoints").is_dir()
    assert not any(p.name.startswith(".") for p in folder.iterdir())
    assert np.array_equal(
        ImageToMusic.load(folder).predict(torch.zeros(1, 3, 224, 224)),
        loaded.predict(torch.zeros(1, 3, 224, 224)),
    )
    assert os.path.isdir(folder)


# --------------------------------------------------- generate never destroys a file
def test_generate_files_refuses_to_overwrite_unless_asked(saved, tmp_path):
    from PIL import Image

    model = ImageToMusic.load(saved)
    photo = tmp_path / "beach.png"
    Image.new("RGBA", (400, 300), (10, 120, 200, 255)).save(photo)
    out = tmp_path / "music"
    out.mkdir()
    (out / "beach.wav").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=r"beach\.wav already exists; pass overwrite=True"):
        model.generate_files([photo], out)
    assert (out / "beach.wav").read_bytes() == b"mine" and not (out / "beach.png").exists()
    assert model.generate_files(str(photo), out, overwrite=True) == [out / "beach.wav"]
    assert (out / "beach.wav").read_bytes() != b"mine"


def test_generate_files_never_writes_over_the_input_photo(saved, tmp_path):
    from PIL import Image

    model = ImageToMusic.load(saved)
    photo = tmp_path / "beach.png"
    Image.new("RGBA", (400, 300), (10, 120, 200, 255)).save(photo)
    original = photo.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="would overwrite the input image"):
            model.generate_files([photo], tmp_path, overwrite=overwrite)
    assert photo.read_bytes() == original and not (tmp_path / "beach.wav").exists()


def test_generate_files_names_an_out_dir_that_is_a_file(saved, tmp_path):
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    with pytest.raises(FileExistsError, match=rf"out_dir {target} is a file"):
        ImageToMusic.load(saved).generate_files(torch.zeros(1, 3, 224, 224), target)


def test_the_cli_predicts_a_folder_of_photos_and_refuses_to_overwrite(saved, tmp_path, capsys):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (50, 40), (90, 30, 200)).save(photos / f"{name}.jpg")
    (photos / "notes.txt").write_text("not a photo")
    out = tmp_path / "out"
    assert main(["predict", str(saved), str(photos), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a.wav", "b.png", "b.wav"]
    capsys.readouterr()
    assert main(["predict", str(saved), str(photos), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["predict", str(saved), str(photos), "-o", str(out), "--overwrite"]) == 0
