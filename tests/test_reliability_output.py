"""Unwritable and full output folders: a clear error naming the file, and no partial files.

Three ways to fail a write, for every writer (``save_tree``, ``save_audio``,
``ImageToMusic.save``, ``ImageToMusic.generate_files`` and the stand-in
builder):

- the output folder's parent is a regular file (works for any user);
- a simulated full disk: every write to a freshly opened temporary file raises
  ``ENOSPC`` (works everywhere);
- a real full or read-only file system: a 16 kB or read-only tmpfs, mounted
  when the test runs as root with mount rights, skipped otherwise (permission
  bits do not stop root, so a real read-only mount is the honest test there).
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from conchshell import presets
from conchshell.data import build as build_module
from conchshell.data.audio import save_audio
from conchshell.estimator import ImageToMusic
from conchshell.io import load_tree, save_tree

pytestmark = pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning")


@pytest.fixture(scope="module")
def model() -> ImageToMusic:
    return presets.conchshell("tiny", level="high", random_state=0, verbose=0).initialize()


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` (hidden temporary files included), relative names."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _writers(model: ImageToMusic):
    """(name, write(target_folder) -> None) for every writer."""
    image = torch.zeros(3, 224, 224)
    return {
        "save_tree": lambda d: save_tree(d / "state.safetensors", {"w": torch.zeros(50_000)}),
        "save_audio": lambda d: save_audio(d / "clip.wav", np.zeros(128_000), 16_000),
        "model.save": lambda d: model.save(d / "model"),
        "generate_files": lambda d: model.generate_files([image, image], d / "gen"),
    }


WRITERS = ["save_tree", "save_audio", "model.save", "generate_files"]


# ------------------------------------------------------------ parent is a file
@pytest.mark.parametrize("writer", WRITERS)
def test_parent_is_a_regular_file(writer, model, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OSError) as info:
        _writers(model)[writer](blocker)
    assert "blocker" in str(info.value)
    assert _files(tmp_path) == ["blocker"]


def test_builder_refuses_an_output_under_a_file(tmp_path):
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(OSError, match="blocker"):
        build_module.build_standin(tmp_path / "blocker" / "standin")
    assert _files(tmp_path) == ["blocker"]


# ------------------------------------------------------------ simulated full disk
class _FullDisk(io.RawIOBase):
    """A file handle on a disk with no space left: every write raises ENOSPC."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


@pytest.fixture
def full_disk(monkeypatch):
    """Make ``os.fdopen(fd, "w...")`` (how every atomic writer opens its temp file) fail."""
    real = os.fdopen
    allowed = {"n": 0}  # how many writes still succeed before the disk is full

    def fdopen(fd, mode="r", *args, **kwargs):
        if "w" not in mode or allowed["n"] > 0:
            allowed["n"] -= "w" in mode
            return real(fd, mode, *args, **kwargs)
        handle = _FullDisk(fd)
        return handle if "b" in mode else io.TextIOWrapper(handle)

    monkeypatch.setattr(os, "fdopen", fdopen)
    return allowed


@pytest.mark.parametrize("writer", WRITERS)
def test_simulated_full_disk(writer, model, tmp_path, full_disk):
    with pytest.raises(OSError) as info:
        _writers(model)[writer](tmp_path)
    assert info.value.errno == errno.ENOSPC
    assert str(tmp_path) in str(info.value)  # names the file it could not write
    assert _files(tmp_path) == []


def test_model_save_that_fills_the_disk_halfway_leaves_no_partial_model(model, tmp_path, full_disk):
    full_disk["n"] = 1  # the weights fit; the next file does not
    with pytest.raises(OSError, match=r"history\.json"):
        model.save(tmp_path / "model")
    assert _files(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="holds no conchshell model"):
        ImageToMusic.load(tmp_path / "model")


def test_generate_files_that_fills_the_disk_keeps_only_complete_files(model, tmp_path, full_disk):
    full_disk["n"] = 2  # the first WAV and PNG fit
    image = torch.zeros(3, 224, 224)
    with pytest.raises(OSError, match=r"b\.wav"):
        model.generate_files([image, image], tmp_path / "gen", names=["a", "b"])
    assert _files(tmp_path / "gen") == ["a.png", "a.wav"]
    import soundfile as sf

    assert sf.info(tmp_path / "gen" / "a.wav").frames == model._n_samples


def test_builder_full_disk_removes_its_staging_folder(tmp_path, monkeypatch):
    def fill_disk(staging, *args, **kwargs):
        (staging / "Img").mkdir()
        (staging / "Img" / "half.jpg").write_bytes(b"\xff\xd8 half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(build_module, "find_soundfont", lambda: "unused")
    monkeypatch.setattr(build_module, "_write_dataset", fill_disk)
    with pytest.raises(OSError, match=r"cannot write the stand-in dataset .*standin") as info:
        build_module.build_standin(tmp_path / "standin")
    assert info.value.errno == errno.ENOSPC
    assert _files(tmp_path) == [] and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ real file systems
def _mount_tmpfs(target: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture(params=["size=16k", "ro,size=16k"], ids=["full-tmpfs", "read-only-tmpfs"])
def small_fs(request, tmp_path):
    target = tmp_path / "mnt"
    if not _mount_tmpfs(target, request.param):
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    yield target, (errno.EROFS if request.param.startswith("ro") else errno.ENOSPC)
    subprocess.run(["umount", str(target)], check=True)


@pytest.mark.parametrize("writer", WRITERS)
def test_real_full_or_read_only_file_system(writer, model, small_fs):
    target, code = small_fs
    # On the read-only mount, model.save and generate_files already fail creating their folder.
    with pytest.raises(OSError) as info:
        _writers(model)[writer](target)
    assert info.value.errno == code
    assert str(target) in str(info.value)
    assert _files(target) == []


def test_builder_on_a_full_file_system(small_fs):
    target, code = small_fs
    with pytest.raises(OSError) as info:
        build_module.build_standin(target / "standin")
    assert info.value.errno == code
    assert "standin" in str(info.value)
    assert _files(target) == []


def test_what_fits_still_loads(tmp_path):
    # Control: the same writers succeed on a normal folder and leave only their files.
    save_tree(tmp_path / "state.safetensors", {"w": torch.zeros(3)})
    save_audio(tmp_path / "clip.wav", np.zeros(160), 16_000)
    assert _files(tmp_path) == ["clip.wav", "state.safetensors"]
    assert load_tree(tmp_path / "state.safetensors")["w"].shape == (3,)
