"""Loading Jukebox checkpoints in the official structure, strictly and safely."""

from __future__ import annotations

import pytest
import torch

from conchshell.codec.checkpoint import load_jukebox_checkpoint
from conchshell.codec.jukebox import JukeboxCodec


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread avoids OpenMP spinning on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> tuple[str, JukeboxCodec]:
    """A paper-shaped codec saved as the released ``vqvae.pth.tar`` is laid out."""
    source = JukeboxCodec.sized("paper", device="cpu", random_state=11).initialize()
    state = {"module." + k: v.clone() for k, v in source.module_.state_dict().items()}
    path = tmp_path_factory.mktemp("jukebox") / "vqvae.pth.tar"
    torch.save({"model": state, "step": 12345, "hps": {"sr": 44100}}, path)
    return str(path), source


def test_official_structure_loads_and_reproduces_outputs(official) -> None:
    path, source = official
    loaded = JukeboxCodec.sized("paper", weights=path, device="cpu", random_state=99).initialize()
    audio = torch.randn(2, 1024) * 0.2
    for level in ("deep", "low", "high"):
        latents = loaded.transform(audio, level=level)
        assert torch.equal(latents, source.transform(audio, level=level))
        assert torch.equal(loaded.encode(audio, level), source.encode(audio, level))
        codes = loaded.encode(audio, level)
        assert torch.equal(loaded.decode(codes, level), source.decode(codes, level))


def test_reader_strips_the_data_parallel_prefix(official) -> None:
    path, source = official
    state = load_jukebox_checkpoint(path)
    assert list(state) == list(source.module_.state_dict())
    assert all(not k.startswith("module.") for k in state)


def test_a_bare_state_dict_is_accepted(tmp_path) -> None:
    source = JukeboxCodec.sized("tiny", random_state=0).initialize()
    path = tmp_path / "bare.pt"
    torch.save(source.module_.state_dict(), path)
    loaded = JukeboxCodec.sized("tiny", weights=path, random_state=1).initialize()
    audio = torch.randn(1, 256)
    assert torch.equal(loaded.transform(audio, 2), source.transform(audio, 2))


def test_frozen_load_keeps_decoding_differentiable(official) -> None:
    path, _ = official
    codec = JukeboxCodec.sized("paper", weights=path, frozen=True, device="cpu").initialize()
    latents = torch.randn(1, 64, 16, requires_grad=True)
    codec.decode(latents, "high").abs().mean().backward()
    assert latents.grad.abs().sum() > 0


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path) -> None:
    state = JukeboxCodec.sized("tiny", random_state=0).initialize().module_.state_dict()
    state = {"module." + k: v for k, v in state.items()}
    del state["module.decoders.0.out.bias"]
    state["module.extra.weight"] = torch.zeros(1)
    state["module.bottleneck.level_blocks.0.k"] = torch.zeros(5, 16)
    path = tmp_path / "bad.pth.tar"
    torch.save({"model": state}, path)
    with pytest.raises(ValueError) as info:
        JukeboxCodec.sized("tiny", weights=path).initialize()
    text = str(info.value)
    assert "bad.pth.tar" in text
    assert "1 missing keys: decoders.0.out.bias" in text
    assert "1 unexpected keys: extra.weight" in text
    assert "bottleneck.level_blocks.0.k: file (5, 16) vs model (32, 16)" in text


def test_paper_file_into_a_small_codec_names_the_shapes(official) -> None:
    path, _ = official
    with pytest.raises(ValueError, match="mismatched shapes"):
        JukeboxCodec.sized("small", weights=path, device="cpu").initialize()


def test_non_dict_and_corrupt_files_are_refused(tmp_path) -> None:
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(ValueError, match="not a dict"):
        load_jukebox_checkpoint(listed)
    not_state = tmp_path / "model_is_list.pt"
    torch.save({"model": [1, 2]}, not_state)
    with pytest.raises(ValueError, match="not a state dict"):
        load_jukebox_checkpoint(not_state)
    mixed = tmp_path / "mixed.pt"
    torch.save({"model": {"a": torch.zeros(1), "b": 3}}, mixed)
    with pytest.raises(ValueError, match="names to tensors"):
        load_jukebox_checkpoint(mixed)
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match=r"garbage\.pth\.tar"):
        load_jukebox_checkpoint(garbage)
    good = tmp_path / "good.pt"
    torch.save({"model": {"a": torch.zeros(100)}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated"):
        load_jukebox_checkpoint(truncated)
    empty = tmp_path / "empty.pt"
    torch.save({"model": {}}, empty)
    with pytest.raises(ValueError, match="empty"):
        load_jukebox_checkpoint(empty)
    with pytest.raises(FileNotFoundError):
        load_jukebox_checkpoint(tmp_path / "absent.pth.tar")
    bad_safetensors = tmp_path / "broken.safetensors"
    bad_safetensors.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="safetensors"):
        JukeboxCodec.sized("tiny", weights=bad_safetensors).initialize()


class _Payload:
    """Unpickling this would create a marker file: the loader must never do it."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = str(marker)
    path = tmp_path / "evil.pth.tar"
    torch.save({"model": {"k": torch.zeros(1)}, "extra": payload}, path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused"):
        load_jukebox_checkpoint(path)
    assert not marker.exists()
