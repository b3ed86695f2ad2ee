"""Loading runs no code: every file a user can point the library at refuses a malicious pickle.

Each test writes a file whose unpickling would create a marker file (the
payload works: the control test runs it through an unsafe ``torch.load``), hands
it to a loader, and checks that the loader raises a clear error or warning that
names the file, and that the marker never appears.
"""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_data import write_image, write_tone

from conchshell import presets
from conchshell.codec.checkpoint import load_jukebox_checkpoint
from conchshell.codec.jukebox import JukeboxCodec
from conchshell.data.dataset import MusicImageDataset
from conchshell.datasets import make_toy_dataset
from conchshell.estimator import ImageToMusic
from conchshell.image.vgg import VGGEncoder
from conchshell.video.i3d import I3DExtractor

pytestmark = pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning")


class _Payload:
    """Unpickling this runs ``exec``, which writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


def _evil(path: Path, marker: Path, wrap: str | None = "model") -> Path:
    """A torch checkpoint whose state dict carries the payload beside a real tensor."""
    state = {"weight": torch.zeros(2), "evil": _Payload(marker)}
    torch.save({wrap: state} if wrap else state, path)
    return path


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    # Never leave the marker for another test to trip over.
    assert not path.exists(), "the malicious payload ran"


def test_control_the_payload_runs_when_loaded_unsafely(tmp_path):
    marker = tmp_path / "control"
    path = _evil(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "payload ran"


def test_jukebox_checkpoint_loader_refuses_a_pickle(tmp_path, marker):
    path = _evil(tmp_path / "vqvae.pth.tar", marker)
    with pytest.raises(ValueError, match=r"vqvae\.pth\.tar.*refused for safety"):
        load_jukebox_checkpoint(path)
    with pytest.raises(ValueError, match="refused for safety"):
        JukeboxCodec.sized("tiny", weights=path).initialize()


def test_jukebox_codec_refuses_a_pickle_named_safetensors(tmp_path, marker):
    path = _evil(tmp_path / "codec.safetensors", marker)
    with pytest.raises(ValueError, match=r"codec\.safetensors"):
        JukeboxCodec.sized("tiny", weights=path).initialize()


def test_i3d_loader_refuses_a_pickle(tmp_path, marker):
    path = _evil(tmp_path / "i3d.pyth", marker, wrap="model_state")
    with pytest.raises(ValueError, match=r"i3d\.pyth.*weights_only"):
        I3DExtractor(weights=path, width=8).initialize()


def test_vgg_loader_refuses_a_pickle(tmp_path, marker):
    path = _evil(tmp_path / "vgg11.pth", marker, wrap=None)
    with pytest.raises(ValueError, match=r"vgg11\.pth.*weights_only"):
        VGGEncoder(arch="vgg11", weights=path).initialize()


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    presets.conchshell("tiny", level="high", random_state=0, verbose=0).initialize().save(folder)
    return folder


def test_model_folder_with_a_pickle_for_weights_is_refused(saved_model, tmp_path, marker):
    folder = tmp_path / "model"
    folder.mkdir()
    for f in saved_model.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    ImageToMusic.load(folder)  # the copy loads before it is tampered with
    _evil(folder / "model.safetensors", marker, wrap=None)
    with pytest.raises(ValueError, match=r"model\.safetensors is not a readable conchshell file"):
        ImageToMusic.load(folder)


def test_model_folder_naming_a_foreign_class_is_refused(saved_model, tmp_path, marker):
    folder = tmp_path / "model"
    folder.mkdir()
    for f in saved_model.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    params = (folder / "params.json").read_text()
    # A class path is the JSON equivalent of a pickle's GLOBAL: only conchshell's are built.
    tampered = params.replace('"conchshell.estimator.ImageToMusic"', '"os.system"', 1)
    assert tampered != params
    (folder / "params.json").write_text(tampered)
    with pytest.raises(ValueError, match="not a conchshell component class"):
        ImageToMusic.load(folder)


@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset(n_per_category=1, n_samples=16000, random_state=0)


def _tiny(ckpt: Path, max_steps: int) -> ImageToMusic:
    return presets.conchshell(
        "tiny",
        level="high",
        random_state=0,
        verbose=0,
        max_steps=max_steps,
        checkpoint_every=1,
        checkpoint_dir=ckpt,
    )


def test_resume_checkpoint_carrying_a_pickle_is_refused(toy, tmp_path, marker):
    _tiny(tmp_path, 2).fit(toy)
    checkpoints = sorted(tmp_path.glob("step-*.safetensors"))
    assert len(checkpoints) == 2
    _evil(checkpoints[-1], marker, wrap=None)
    # The newest is refused by name; training resumes from the previous one.
    with pytest.warns(RuntimeWarning, match=r"step-000000002\.safetensors is damaged"):
        resumed = _tiny(tmp_path, 3).fit(toy, resume=True)
    assert [h["step"] for h in resumed.history_] == [1, 2, 3]


def test_stage_file_carrying_a_pickle_is_refused(toy, tmp_path, marker):
    _tiny(tmp_path, 1).fit(toy)
    _evil(tmp_path / "stages.safetensors", marker, wrap=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"stages\.safetensors is not a readable conchshell"):
            _tiny(tmp_path, 2).fit(toy, resume=True)


def test_feature_file_carrying_a_pickle_is_refused(tmp_path, marker):
    # BOP's Npy/ folder holds precomputed features: np.load must not unpickle them.
    evil = tmp_path / "feature.npy"
    np.save(evil, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    dataset = MusicImageDataset(
        [write_image(tmp_path / "a.png")],
        [write_tone(tmp_path / "a.wav")],
        [0],
        ["coast"],
        feature_paths=[evil],
    )
    with pytest.raises(ValueError, match=r"feature\.npy.*allow_pickle=False"):
        dataset.get_feature(0)
