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
flow          deep   TCNN-6              Algorithm 1 (groups)
mosaic        deep   TCNN-6              Algorithm 1 (groups)
============  =====  ==================  ==========================

``flow`` is not the paper's: it swaps the adversarially trained generator for
a :class:`~conchshell.gan.flow.FlowGenerator`, which samples one piece per
noise draw instead of regressing towards the average of a scene's pieces
(docs/training.md, "Why an average loses the scene"). Nor is ``mosaic``: its
:class:`~conchshell.gan.mosaic.MosaicGenerator` learns no network and writes
each clip from windows of the training pieces' own latents, the one recipe
whose clips decode to clean piano on a CPU; the shipped model uses it.

``size`` picks component sizes, with the words every sized component uses
(:data:`conchshell.base.SIZES`: ``Generator(size=...)``,
``JukeboxCodec.sized(...)``, ``MultiScaleDiscriminator.sized(...)``):

- ``"paper"``: the paper's components (TCNN-6, I3D-R50 with 2048-d features,
  the released Jukebox VQ-VAE's shape, G and D of Table 1). Build them
  untrained with :meth:`ImageToMusic.initialize` to inspect or time them.
- ``"small"``: the same structure, narrow enough to train on two CPU cores
  (I3D width 16 -> 512-d features, the small codec with the paper's hops, the
  small generator and discriminator), with issue 19's recipe, a difference
  from the paper: the generator has a 32-d noise input, a signal-preserving
  initialisation and standardised features, and is trained by conditional
  IMLE on the codec's latents (``warm_start_steps`` of ``Generator.fit``,
  about 0.27 s each on two cores, the candidates compared on 2000 random
  latent frames, ``search_frames``) with no adversarial stage (``max_steps=0``),
  because the paper's GAN steps undid the music at this scale. Setting
  ``max_steps`` adds them back, the discriminator and the losses then seeing
  a random window of 1000 latent frames per clip (``gan_crop``; about 12x
  cheaper than the whole 16,000 at Deep, ``bench/train_gan.py``).
- ``"tiny"``: for tests: seconds end to end.

Earlier code spelled it ``scale=`` and called the small size ``"cpu"``; both
are kept as aliases (``conchshell(scale="cpu")`` is ``conchshell("small")``).
"""

from __future__ import annotations

from typing import Any

from conchshell.base import check_size
from conchshell.estimator import ImageToMusic

__all__ = [
    "PAPER_PRESETS",
    "PRESETS",
    "baseline_1",
    "baseline_2",
    "baseline_3",
    "conchshell",
    "flow",
    "get",
    "mosaic",
    "vgg_baseline",
]

# Earlier names of sizes, kept as aliases: the docs called the small size "cpu".
_ALIASES = {"cpu": "small"}


def _resolve_size(size: str, scale: str | None = None) -> str:
    """The size asked for, as ``size`` or as its earlier name ``scale``."""
    if scale is not None:
        if size != "paper":
            raise TypeError(
                f"give size or its alias scale, not both (size={size!r}, scale={scale!r})"
            )
        size = scale
    return check_size(_ALIASES.get(size, size) if isinstance(size, str) else size)


def _generator(size: str) -> Any:
    from conchshell.gan.generator import Generator

    # Sizes left at None follow the other components and the data when fitting.
    sizes = {"level": None, "in_features": None, "n_categories": None, "emb_width": None}
    if size == "paper":
        return Generator.sized(size, **sizes)
    # The CPU recipe (issue 19): an init that keeps the input's signal, scaled features, and a
    # noise input trained by conditional IMLE, so each picture gets a piece, not the mean.
    return Generator.sized(
        size,
        **sizes,
        init_std="he",
        noise_dim=32 if size == "small" else 4,
        n_candidates=8 if size == "small" else 2,
        # 2000 of 16,000 Deep frames pick the exact search's candidate 92 % of the time
        # at a quarter of its cost (bench/imle_search.py); tiny clips are shorter than that.
        search_frames=2000 if size == "small" else None,
        feature_scaling=True,
        lr=3e-4,
    )


def _components(size: str) -> dict[str, Any]:
    from conchshell.codec.jukebox import JukeboxCodec
    from conchshell.gan.discriminator import MultiScaleDiscriminator
    from conchshell.gan.losses import ConchShellLoss
    from conchshell.image.forging import TemporalForger
    from conchshell.image.tcnn import TCNNEncoder
    from conchshell.video.i3d import I3DExtractor

    if size == "paper":
        return {
            "encoder": TCNNEncoder(),
            "forger": TemporalForger(),
            "extractor": I3DExtractor(),
            "codec": JukeboxCodec.sized("paper"),
            "generator": _generator("paper"),
            "discriminator": MultiScaleDiscriminator.sized("paper"),
            "loss": ConchShellLoss(),
        }
    if size == "small":
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
            "codec": JukeboxCodec.sized("small"),
            "generator": _generator("small"),
            "discriminator": MultiScaleDiscriminator.sized("small"),
            "loss": ConchShellLoss(),
            "batch_size": 2,
            # Issue 19: on two cores the paper's adversarial steps, started from the IMLE
            # generator, took its clips from music 0.75 to 0.0 in 150 steps (their paired
            # mel and waveform losses pull towards the average of unaligned pieces again).
            # So this size regresses by IMLE only; set max_steps to add the GAN stage.
            "max_steps": 0,
            "warm_start_steps": 6000,
            # A Deep step over all 16,000 frames costs 5-7 s on 2 cores; 1000 (every level's D
            # then costs what High's whole sequence does) about 0.5 s (bench/train_gan.py).
            "gan_crop": 1000,
            "lr_g": 1e-4,
            "lr_d": 1e-4,
            "lr_step": 200,
            "checkpoint_every": 200,
        }
    return {
        "encoder": TCNNEncoder(max_epochs=1, validation_fraction=0.0, batch_size=8),
        "forger": TemporalForger(size=32),
        "extractor": I3DExtractor(width=8),
        "codec": JukeboxCodec.sized("tiny", downs_t=(3, 2, 2), max_steps=2),
        "generator": _generator("tiny"),
        "discriminator": MultiScaleDiscriminator.sized("tiny"),
        "loss": ConchShellLoss(),
        "duration": 1.0,
        "batch_size": 2,
        "max_steps": 2,
        "lr_g": 1e-4,
        "lr_d": 1e-4,
        "checkpoint_every": 1,
    }


def conchshell(size: str = "paper", *, scale: str | None = None, **params: Any) -> ImageToMusic:
    """ConchShell: TCNN-6, forged video, I3D, G-Deep and D-Deep.

    Parameters
    ----------
    size : {"paper", "small", "tiny"}, default="paper"
        Component sizes (see the module docs); ``"cpu"``, the earlier name of
        ``"small"``, is accepted too.
    scale : str, optional
        The earlier name of ``size``, kept as an alias.
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.

    Examples
    --------
    >>> conchshell("small").get_params()["level"]
    'deep'
    """
    components = _components(_resolve_size(size, scale))
    return ImageToMusic(level="deep", **components).set_params(**params)


def baseline_1(size: str = "paper", *, scale: str | None = None, **params: Any) -> ImageToMusic:
    """Baseline-1: ConchShell at the High level (G-High, D-High).

    Parameters
    ----------
    size : {"paper", "small", "tiny"}, default="paper"
        Component sizes (see the module docs); ``"cpu"``, the earlier name of
        ``"small"``, is accepted too.
    scale : str, optional
        The earlier name of ``size``, kept as an alias.
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.
    """
    return conchshell(_resolve_size(size, scale), level="high", **params)


def baseline_2(size: str = "paper", *, scale: str | None = None, **params: Any) -> ImageToMusic:
    """Baseline-2: ConchShell at the Low level (G-Low, D-Low).

    Parameters
    ----------
    size : {"paper", "small", "tiny"}, default="paper"
        Component sizes (see the module docs); ``"cpu"``, the earlier name of
        ``"small"``, is accepted too.
    scale : str, optional
        The earlier name of ``size``, kept as an alias.
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.
    """
    return conchshell(_resolve_size(size, scale), level="low", **params)


def baseline_3(size: str = "paper", *, scale: str | None = None, **params: Any) -> ImageToMusic:
    """Baseline-3: ConchShell with the 18-block TCNN-18 image module.

    Parameters
    ----------
    size : {"paper", "small", "tiny"}, default="paper"
        Component sizes (see the module docs); ``"cpu"``, the earlier name of
        ``"small"``, is accepted too.
    scale : str, optional
        The earlier name of ``size``, kept as an alias.
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.
    """
    return conchshell(_resolve_size(size, scale), encoder__n_blocks=18, **params)


def vgg_baseline(size: str = "paper", *, scale: str | None = None, **params: Any) -> ImageToMusic:
    """Deep level with VGG-16 features and no forged time axis.

    The forger repeats the last VGG block's map (group-averaged to three
    channels) along time instead of showing one block per frame.

    Parameters
    ----------
    size : {"paper", "small", "tiny"}, default="paper"
        Component sizes (see the module docs); ``"cpu"``, the earlier name of
        ``"small"``, is accepted too.
    scale : str, optional
        The earlier name of ``size``, kept as an alias.
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.
    """
    from conchshell.image.vgg import VGGEncoder

    size = _resolve_size(size, scale)
    return conchshell(size, encoder=VGGEncoder(), forger__mode="static", **params)


def flow(size: str = "paper", *, scale: str | None = None, **params: Any) -> ImageToMusic:
    """ConchShell's components with a flow-matching generator instead of the GAN.

    The encoder, forger, extractor and codec are :func:`conchshell`'s at the
    same size; the generator is a :class:`~conchshell.gan.flow.FlowGenerator`
    trained on the codec's latents for ``warm_start_steps`` steps, with no
    adversarial stage (``max_steps=0``). A difference from the paper.

    Parameters
    ----------
    size : {"paper", "small", "tiny"}, default="paper"
        Component sizes (see the module docs); ``"cpu"``, the earlier name of
        ``"small"``, is accepted too.
    scale : str, optional
        The earlier name of ``size``, kept as an alias.
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.

    Examples
    --------
    >>> type(flow("small").generator).__name__
    'FlowGenerator'
    """
    from conchshell.gan.flow import FlowGenerator

    size = _resolve_size(size, scale)
    sizes = {"level": None, "in_features": None, "n_categories": None, "emb_width": None}
    generator = FlowGenerator.sized(size, **sizes)
    if size == "tiny":
        generator.set_params(crop_frames=64, n_steps=2, batch_size=4)
    # About 0.5 s a step on two cores at "small": 3000 steps take 25 minutes.
    steps = {"paper": 20000, "small": 3000, "tiny": 2}[size]
    settings = {"generator": generator, "max_steps": 0, "warm_start_steps": steps}
    return conchshell(size, **{**settings, **params})


def mosaic(size: str = "paper", *, scale: str | None = None, **params: Any) -> ImageToMusic:
    """ConchShell's components with a mosaic generator, which learns no network.

    The encoder, forger, extractor and codec are :func:`conchshell`'s at the
    same size; the generator is a :class:`~conchshell.gan.mosaic.MosaicGenerator`,
    which writes each clip's latents from windows of the training pieces' own
    latents, chosen by the photo's category and features. No generator
    training, no adversarial stage (``max_steps=0``). A difference from the
    paper; the shipped model uses it, because on a CPU it is the recipe whose
    clips decode to clean piano (docs/training.md).

    Parameters
    ----------
    size : {"paper", "small", "tiny"}, default="paper"
        Component sizes (see the module docs); ``"cpu"``, the earlier name of
        ``"small"``, is accepted too.
    scale : str, optional
        The earlier name of ``size``, kept as an alias.
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.

    Examples
    --------
    >>> type(mosaic("small").generator).__name__
    'MosaicGenerator'
    """
    from conchshell.gan.mosaic import MosaicGenerator

    size = _resolve_size(size, scale)
    sizes = {"level": None, "in_features": None, "n_categories": None, "emb_width": None}
    generator = MosaicGenerator(**sizes, n_units=2 if size == "tiny" else 8)
    settings = {"generator": generator, "max_steps": 0, "warm_start_steps": 0}
    return conchshell(size, **{**settings, **params})


PRESETS = {
    "conchshell": conchshell,
    "baseline_1": baseline_1,
    "baseline_2": baseline_2,
    "baseline_3": baseline_3,
    "vgg_baseline": vgg_baseline,
    "flow": flow,
    "mosaic": mosaic,
}

#: The paper's model and baselines (Table 1); ``flow`` and ``mosaic`` are this library's own.
PAPER_PRESETS = ("conchshell", "baseline_1", "baseline_2", "baseline_3", "vgg_baseline")


def get(name: str, size: str = "paper", *, scale: str | None = None, **params: Any) -> ImageToMusic:
    """A preset by name (``"conchshell"``, ``"baseline_1"`` ... ``"vgg_baseline"``).

    Parameters
    ----------
    name : str
        A key of :data:`PRESETS`.
    size : {"paper", "small", "tiny"}, default="paper"
        Component sizes (see the module docs); ``"cpu"``, the earlier name of
        ``"small"``, is accepted too.
    scale : str, optional
        The earlier name of ``size``, kept as an alias.
    **params
        Any further :meth:`ImageToMusic.set_params` keys.

    Returns
    -------
    ImageToMusic
        Unfitted.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](_resolve_size(size, scale), **params)
