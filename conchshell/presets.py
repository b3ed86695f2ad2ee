"""The paper's models and baselines as unfitted :class:`ImageToMusic` estimators.

Every preset is the same estimator with other component settings, so one
becomes another by ``set_params`` (Table 1 of the paper):

============  =====  ==================  ==========================
preset        level  image module        forging
============  =====  ==================  ==========================
conchshell    deep   TCNN-6              Algorithm 1 (groups)
baseline_1    high   TCNN-6              Algorithm 1
baseline_2    low    TCNN-6              Algorithm 1
baseline_3    deep   TCNN-18             Algorithm 1
vgg_baseline  deep   VGG-16              none: the last VGG block's map, repeated
============  =====  ==================  ==========================

``scale`` picks component sizes:

- ``"paper"``: the paper's components (TCNN-6, I3D-R50 with 2048-d features,
  the released Jukebox VQ-VAE's shape, G and D of Table 1). Build them
  untrained with :meth:`ImageToMusic.initialize` to inspect or time them.
- ``"cpu"``: the same structure, narrow enough to train on two CPU cores in
  minutes (I3D width 16 -> 512-d features, the small codec with the paper's
  hops, the small generator and discriminator). A Deep GAN step still costs
  seconds on a CPU, so this scale first regresses the generator on the
  codec's latents for 600 steps (``warm_start_steps``, a fraction of a second
  each) and then trains adversarially with the paper's losses.
- ``"tiny"``: for tests: seconds end to end.
"""

from __future__ import annotations

from typing import Any

from conchshell.estimator import ImageToMusic

__all__ = ["PRESETS", "baseline_1", "baseline_2", "baseline_3", "conchshell", "get", "vgg_baseline"]

_SCALES = ("paper", "cpu", "tiny")


def _generator(size: str) -> Any:
    from conchshell.gan.generator import Generator

    # Sizes left at None follow the other components and the data when fitting.
    return Generator(level=None, size=size, in_features=None, n_categories=None, emb_width=None)


def _components(scale: str) -> dict[str, Any]:
    from conchshell.codec.jukebox import JukeboxCodec
    from conchshell.gan.discriminator import MultiScaleDiscriminator
    from conchshell.gan.losses import ConchShellLoss
    from conchshell.image.forging import TemporalForger
    from conchshell.image.tcnn import TCNNEncoder
    from conchshell.video.i3d import I3DExtractor

    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    if scale == "paper":
        return {
            "encoder": TCNNEncoder(),
            "forger": TemporalForger(),
            "extractor": I3DExtractor(),
            "codec": JukeboxCodec.paper(),
            "generator": _generator("paper"),
            "discriminator": MultiScaleDiscriminator(),
            "loss": ConchShellLoss(),
        }
    if scale == "cpu":
        return {
            # A 12-epoch budget: the default recipe (cosine, mixup, small crops) needs its 60
            # epochs; in 12 the plain constant-rate recipe did as well (cross-validated).
            "encoder": TCNNEncoder(
                max_epochs=12,
                patience=4,
                lr=3e-4,
                lr_schedule="constant",
                weight_decay=1e-2,
                label_smoothing=0.0,
                mixup=0.0,
                crop_area=0.6,
                mixed_precision=True,
            ),
            "forger": TemporalForger(size=112),
            "extractor": I3DExtractor(width=16),
            "codec": JukeboxCodec.small(),
            "generator": _generator("small"),
            "discriminator": MultiScaleDiscriminator.small(),
            "loss": ConchShellLoss(),
            "batch_size": 2,
            "max_steps": 600,
            "warm_start_steps": 600,
            "lr_g": 1e-4,
            "lr_d": 1e-4,
            "lr_step": 200,
            "checkpoint_every": 200,
        }
    return {
        "encoder": TCNNEncoder(max_epochs=1, validation_fraction=0.0, batch_size=8),
        "forger": TemporalForger(size=32),
        "extractor": I3DExtractor(width=8),
        "codec": JukeboxCodec.tiny(downs_t=(3, 2, 2), max_steps=2),
        "generator": _generator("tiny"),
        "discriminator": MultiScaleDiscriminator.tiny(),
        "loss": ConchShellLoss(),
        "duration": 1.0,
        "batch_size": 2,
        "max_steps": 2,
        "lr_g": 1e-4,
        "lr_d": 1e-4,
        "checkpoint_every": 1,
    }


def conchshell(scale: str = "paper", **params: Any) -> ImageToMusic:
    """ConchShell: TCNN-6, forged video, I3D, G-Deep and D-Deep.

    Parameters
    ----------
    scale : {"paper", "cpu", "tiny"}, default="paper"
        Component sizes (see the module docs).
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.

    Examples
    --------
    >>> conchshell(scale="cpu").get_params()["level"]
    'deep'
    """
    return ImageToMusic(level="deep", **_components(scale)).set_params(**params)


def baseline_1(scale: str = "paper", **params: Any) -> ImageToMusic:
    """Baseline-1: ConchShell at the High level (G-High, D-High).

    Parameters
    ----------
    scale : {"paper", "cpu", "tiny"}, default="paper"
        Component sizes (see the module docs).
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.
    """
    return conchshell(scale, level="high", **params)


def baseline_2(scale: str = "paper", **params: Any) -> ImageToMusic:
    """Baseline-2: ConchShell at the Low level (G-Low, D-Low).

    Parameters
    ----------
    scale : {"paper", "cpu", "tiny"}, default="paper"
        Component sizes (see the module docs).
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.
    """
    return conchshell(scale, level="low", **params)


def baseline_3(scale: str = "paper", **params: Any) -> ImageToMusic:
    """Baseline-3: ConchShell with the 18-block TCNN-18 image module.

    Parameters
    ----------
    scale : {"paper", "cpu", "tiny"}, default="paper"
        Component sizes (see the module docs).
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.
    """
    return conchshell(scale, encoder__n_blocks=18, **params)


def vgg_baseline(scale: str = "paper", **params: Any) -> ImageToMusic:
    """Deep level with VGG-16 features and no forged time axis.

    The forger repeats the last VGG block's map (group-averaged to three
    channels) along time instead of showing one block per frame.

    Parameters
    ----------
    scale : {"paper", "cpu", "tiny"}, default="paper"
        Component sizes (see the module docs).
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.
    """
    from conchshell.image.vgg import VGGEncoder

    return conchshell(scale, encoder=VGGEncoder(), forger__mode="static", **params)


PRESETS = {
    "conchshell": conchshell,
    "baseline_1": baseline_1,
    "baseline_2": baseline_2,
    "baseline_3": baseline_3,
    "vgg_baseline": vgg_baseline,
}


def get(name: str, scale: str = "paper", **params: Any) -> ImageToMusic:
    """A preset by name (``"conchshell"``, ``"baseline_1"`` ... ``"vgg_baseline"``).

    Parameters
    ----------
    name : str
        A key of :data:`PRESETS`.
    scale : {"paper", "cpu", "tiny"}, default="paper"
        Component sizes (see the module docs).
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](scale, **params)
