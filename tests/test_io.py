"""Atomic, code-free persistence of nested state."""

import os
import stat

import numpy as np
import pytest
import torch

from conchshell.io import atomic_write, load_tree, save_tree


def test_roundtrip_of_optimizer_and_rng_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), betas=(0.5, 0.999))
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    tree = {
        "opt": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "np": np.arange(4),
        "pair": (1, "a"),
        "history": [{"step": 1, "loss": 0.5}],
        "none": None,
    }
    path = tmp_path / "state.safetensors"
    save_tree(path, tree)
    back = load_tree(path)
    assert back["pair"] == (1, "a")
    assert back["history"] == [{"step": 1, "loss": 0.5}]
    assert np.array_equal(back["np"], np.arange(4))
    assert torch.equal(back["rng"], tree["rng"])
    assert list(back["opt"]["state"]) == [0, 1]  # int keys survive JSON
    assert back["opt"]["param_groups"][0]["betas"] == (0.5, 0.999)
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    fresh.load_state_dict(back["opt"])
    assert torch.equal(
        fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


def test_unsupported_values_are_refused_before_writing(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="cannot save a value of type object"):
        save_tree(path, {"bad": object()})
    assert not path.exists()


def test_damaged_file_is_a_clear_error(tmp_path):
    path = tmp_path / "x.safetensors"
    save_tree(path, {"w": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="is not a readable conchshell file"):
        load_tree(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_tree(tmp_path / "missing.safetensors")


def test_pickle_files_are_not_loaded(tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save({"w": torch.ones(1)}, path)  # a zip/pickle, not safetensors
    with pytest.raises(ValueError, match="not a readable conchshell file"):
        load_tree(path)


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as handle:
        handle.write("partial")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_unwritable_folder_is_named(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(PermissionError, match="cannot write in"):
        save_tree(folder / "x.safetensors", {"a": 1})


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_tree(tmp_path / "nope" / "x.safetensors", {"a": 1})


def test_atomic_write_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_tree(tmp_path / "x.safetensors", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.safetensors").stat().st_mode) == 0o644
