"""conchshell: turn a picture into an 8-second piano piece (the ConchShell model).

The public names are imported lazily, so ``import conchshell`` stays fast and
the command line can answer ``--help`` without loading torch models.

Examples
--------
>>> import conchshell
>>> conchshell.__version__
'0.1.0'
"""

from __future__ import annotations

import importlib
from typing import Any

from conchshell._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "TCNNEncoder": "conchshell.image.tcnn",
    "TCNN": "conchshell.image.tcnn",
    "VGGEncoder": "conchshell.image.vgg",
    "TemporalForger": "conchshell.image.forging",
    "I3DExtractor": "conchshell.video.i3d",
    "JukeboxCodec": "conchshell.codec.jukebox",
    "load_jukebox_checkpoint": "conchshell.codec.checkpoint",
    "Generator": "conchshell.gan.generator",
    "FlowGenerator": "conchshell.gan.flow",
    "MultiScaleDiscriminator": "conchshell.gan.discriminator",
    "ConchShellLoss": "conchshell.gan.losses",
    "ImageToMusic": "conchshell.estimator",
    "MusicImageDataset": "conchshell.data.dataset",
    "load_bop": "conchshell.datasets",
    "load_pairs": "conchshell.datasets",
    "profile": "conchshell.profile",
    "optimize": "conchshell.inference",
    "presets": "conchshell.presets",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'conchshell' has no attribute {name!r}")
    if name in ("profile", "presets"):
        return importlib.import_module(module)
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
