"""ConchShell's losses (paper section 3.4): plain functions and their weighted sum.

The discriminator terms read the per-scale outputs of
:class:`~conchshell.gan.discriminator.MultiScaleDiscriminator` (a list per
scale of layer outputs, logits last). The audio terms compare real audio with
audio decoded from the generator's latents. For them to train the generator,
the decoding must keep the graph: quantise with the codec's straight-through
estimator, then run its (frozen) decoder with gradients enabled::

    quantized, _ = codec.quantize(pred_latents, level=level)  # straight-through
    fake_audio = codec.decode(quantized, level=level)          # differentiable

(The authors decoded under ``no_grad`` after a nearest-code lookup, so their
wave and mel terms never reached the generator.)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torchaudio
from sklearn.base import BaseEstimator
from torch.nn import functional as F

__all__ = [
    "LOSS_TERMS",
    "ConchShellLoss",
    "code_l1_loss",
    "discriminator_hinge_loss",
    "feature_matching_loss",
    "generator_hinge_loss",
    "latent_l1_loss",
    "log_mel",
    "mel_l1_loss",
    "waveform_l1_loss",
]

# The generator terms, in the order they are reported; also ConchShellLoss's weight names.
LOSS_TERMS = ("adv", "fm", "wave", "mel", "latent", "code")

ScaleOutputs = Sequence[Sequence[torch.Tensor] | torch.Tensor]


def _logits(outputs: ScaleOutputs, name: str) -> list[torch.Tensor]:
    """Last entry of each scale's list (or the tensor itself when given logits only)."""
    if isinstance(outputs, torch.Tensor) or len(outputs) == 0:
        raise ValueError(
            f"{name} must be a non-empty list with one entry per discriminator scale "
            "(a list of layer outputs, logits last)"
        )
    return [scale if isinstance(scale, torch.Tensor) else scale[-1] for scale in outputs]


def discriminator_hinge_loss(
    real_outputs: ScaleOutputs, fake_outputs: ScaleOutputs
) -> torch.Tensor:
    """Hinge loss of the discriminator, summed over scales (paper eq. 1).

    ``sum_k mean(relu(1 - D_k(real))) + mean(relu(1 + D_k(fake)))``. Pass the
    discriminator's outputs on *detached* fake latents so this step does not
    reach the generator.

    Parameters
    ----------
    real_outputs, fake_outputs : list
        Per scale, the list of layer outputs (logits last), or the logits.

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    real, fake = _logits(real_outputs, "real_outputs"), _logits(fake_outputs, "fake_outputs")
    if len(real) != len(fake):
        raise ValueError(f"{len(real)} real scales but {len(fake)} fake scales")
    return sum(
        (F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)),
        torch.zeros((), device=real[0].device),
    )


def generator_hinge_loss(fake_outputs: ScaleOutputs) -> torch.Tensor:
    """Adversarial loss of the generator, ``sum_k -mean(D_k(fake))`` (paper eq. 2).

    Parameters
    ----------
    fake_outputs : sequence
        Discriminator outputs on generated latents, per scale: a list of layer
        outputs with the logits last (or the logits alone).

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    fake = _logits(fake_outputs, "fake_outputs")
    return sum((-f.mean() for f in fake), torch.zeros((), device=fake[0].device))


def feature_matching_loss(
    real_outputs: ScaleOutputs, fake_outputs: ScaleOutputs, n_layers: int | None = None
) -> torch.Tensor:
    """L1 between the discriminator's features on real and fake latents (paper eq. 3).

    Every layer output but the logits counts, weighted ``4 / (n_layers + 1) /
    num_scales`` (MelGAN's weighting); the real features are detached.

    Parameters
    ----------
    real_outputs, fake_outputs : list of list of torch.Tensor
        Per scale, the layer outputs (logits last).
    n_layers : int or None, default=None
        The discriminator's number of strided layers. ``None`` reads it from
        the outputs: a :class:`MultiScaleDiscriminator` scale returns
        ``n_layers + 3`` of them.

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    for name, outputs in (("real_outputs", real_outputs), ("fake_outputs", fake_outputs)):
        _logits(outputs, name)
        if any(isinstance(scale, torch.Tensor) for scale in outputs):
            raise ValueError(f"{name} must hold every layer's output per scale, not logits only")
    if len(real_outputs) != len(fake_outputs):
        raise ValueError(f"{len(real_outputs)} real scales but {len(fake_outputs)} fake scales")
    depth = len(fake_outputs[0])
    if n_layers is None:
        n_layers = max(depth - 3, 1)
    weight = 4.0 / (n_layers + 1) / len(fake_outputs)
    total = torch.zeros((), device=fake_outputs[0][0].device)
    for real, fake in zip(real_outputs, fake_outputs, strict=True):
        if len(real) != len(fake):
            raise ValueError(f"a scale has {len(real)} real but {len(fake)} fake layer outputs")
        for r, f in zip(real[:-1], fake[:-1], strict=True):
            total = total + weight * F.l1_loss(f, r.detach())
    return total


def _as_batch_audio(audio: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(audio).__name__}")
    if audio.ndim == 3 and audio.shape[1] == 1:
        audio = audio[:, 0]
    if audio.ndim != 2:
        raise ValueError(
            f"{name} must have shape (batch, samples) or (batch, 1, samples), "
            f"got {tuple(audio.shape)}"
        )
    return audio


def _check_pair(real: torch.Tensor, fake: torch.Tensor, what: str) -> None:
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake {what} must have the same shape, "
            f"got {tuple(real.shape)} and {tuple(fake.shape)}"
        )


def waveform_l1_loss(real_audio: torch.Tensor, fake_audio: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two waveforms (paper eq. 4).

    Parameters
    ----------
    real_audio, fake_audio : torch.Tensor of shape (batch, samples) or (batch, 1, samples)

    Returns
    -------
    torch.Tensor
        A scalar; its gradient reaches ``fake_audio``.
    """
    real = _as_batch_audio(real_audio, "real_audio")
    fake = _as_batch_audio(fake_audio, "fake_audio")
    _check_pair(real, fake, "audio")
    return F.l1_loss(fake, real.detach())


@functools.lru_cache(maxsize=16)
def _mel_transform(
    device: torch.device,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    win_length: int,
    n_mels: int,
) -> torchaudio.transforms.MelSpectrogram:
    # Magnitude (power 1) on Slaney-scaled, area-normalised filters, as the
    # librosa filters of the authors' (MelGAN's) Audio2Mel. Built once per setting.
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate,
        n_fft=n_fft,
        win_length=win_length,
        hop_length=hop_length,
        n_mels=n_mels,
        power=1.0,
        norm="slaney",
        mel_scale="slaney",
    )
    return transform.to(device).requires_grad_(False)


def log_mel(
    audio: torch.Tensor,
    sample_rate: int = 16_000,
    n_fft: int = 2048,
    hop_length: int = 300,
    win_length: int = 1200,
    n_mels: int = 128,
    floor: float = 1e-5,
) -> torch.Tensor:
    """Log-mel spectrogram ``log10(max(mel, floor))``, shape ``(batch, n_mels, frames)``.

    ``audio`` is ``(batch, samples)`` or ``(batch, 1, samples)``; the other
    arguments are those of :func:`mel_l1_loss`.

    Parameters
    ----------
    audio : torch.Tensor
        ``(batch, samples)`` or ``(batch, 1, samples)``.
    sample_rate, n_fft, hop_length, win_length, n_mels : int
        The mel transform's settings (by default 16000, 2048, 300, 1200, 128).
    floor : float, default 1e-5
        Smallest mel value before the log.

    Returns
    -------
    torch.Tensor
    """
    audio = _as_batch_audio(audio, "audio")
    transform = _mel_transform(audio.device, sample_rate, n_fft, hop_length, win_length, n_mels)
    return torch.log10(transform(audio.float()).clamp_min(floor))


def mel_l1_loss(
    real_audio: torch.Tensor,
    fake_audio: torch.Tensor,
    sample_rate: int = 16_000,
    n_fft: int = 2048,
    hop_length: int = 300,
    win_length: int = 1200,
    n_mels: int = 128,
    floor: float = 1e-5,
) -> torch.Tensor:
    """L1 between log-mel spectrograms (paper eq. 5, the authors' settings).

    The mel spectrogram is torchaudio's (magnitude, Slaney filters), its log
    ``log10(max(mel, floor))``; the transform is built once per device and setting.

    Parameters
    ----------
    real_audio, fake_audio : torch.Tensor of shape (batch, samples) or (batch, 1, samples)
    sample_rate : int, default=16000
    n_fft : int, default=2048
    hop_length : int, default=300
    win_length : int, default=1200
    n_mels : int, default=128
    floor : float, default=1e-5
        Clamp before the log, so silence does not give ``-inf``.

    Returns
    -------
    torch.Tensor
        A scalar; its gradient reaches ``fake_audio``.
    """
    real = _as_batch_audio(real_audio, "real_audio")
    fake = _as_batch_audio(fake_audio, "fake_audio")
    _check_pair(real, fake, "audio")
    settings = (sample_rate, n_fft, hop_length, win_length, n_mels, floor)
    with torch.no_grad():
        target = log_mel(real, *settings)
    return F.l1_loss(log_mel(fake, *settings), target)


def latent_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and target continuous latents ``(batch, emb_width, frames)``.

    Parameters
    ----------
    pred : torch.Tensor
        Predicted latents.
    target : torch.Tensor
        Target latents, same shape (no gradient flows into it).

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    _check_pair(target, pred, "latents")
    return F.l1_loss(pred, target.detach())


def code_l1_loss(pred: torch.Tensor, quantized_target: torch.Tensor) -> torch.Tensor:
    """L1 between predicted latents and the target's codebook vectors (the authors' code term).

    Parameters
    ----------
    pred : torch.Tensor
        Predicted latents ``(batch, emb_width, frames)``.
    quantized_target : torch.Tensor
        Codebook vectors of the target codes, same shape (no gradient flows into it).

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    _check_pair(quantized_target, pred, "latents")
    return F.l1_loss(pred, quantized_target.detach())


class ConchShellLoss(BaseEstimator):
    """The ConchShell objective (paper eq. 6) as a component with tunable weights.

    ``total = adv * L_adv + fm * L_fm + wave * L_wave + mel * L_mel
    + latent * L_latent + code * L_code``. The defaults are the paper's
    weights; the authors' code also used ``latent=5`` and ``code=8`` (and
    ``adv=1``). Terms are reported *unweighted* under the same names as their
    weights, so ``set_params(mel=20)`` changes exactly what is logged as
    ``"mel"`` times 20 in ``"total"``. A term whose weight is 0 is not
    computed and is reported as 0.

    Parameters
    ----------
    adv : float, default=0.5
        Weight of the generator's hinge loss.
    fm : float, default=3.0
        Weight of feature matching.
    wave : float, default=40.0
        Weight of the waveform L1.
    mel : float, default=15.0
        Weight of the log-mel L1.
    latent : float, default=0.0
        Weight of L1 to the continuous target latents.
    code : float, default=0.0
        Weight of L1 to the quantised target latents.
    sample_rate, n_fft, hop_length, win_length, n_mels : int
        Mel spectrogram settings (defaults: the authors', 16000 / 2048 / 300 /
        1200 / 128).
    mel_floor : float, default=1e-5
        Clamp before the log of the mel spectrogram.

    Examples
    --------
    One adversarial step, given a generator ``g``, discriminator ``d``, codec
    and a batch (``features``, ``categories``, target ``latents``, ``audio``)::

        loss = ConchShellLoss()
        fake = g.module_(features, categories)
        d_terms = loss.discriminator(d.module_(latents), d.module_(fake.detach()))
        d_terms["total"].backward(); d_opt.step()
        quantized, _ = codec.quantize(fake, level=level)
        g_terms = loss.generator(
            d.module_(fake), d.module_(latents),
            fake_audio=codec.decode(quantized, level=level), real_audio=audio,
        )
        g_terms["total"].backward(); g_opt.step()
    """

    def __init__(
        self,
        adv: float = 0.5,
        fm: float = 3.0,
        wave: float = 40.0,
        mel: float = 15.0,
        latent: float = 0.0,
        code: float = 0.0,
        sample_rate: int = 16_000,
        n_fft: int = 2048,
        hop_length: int = 300,
        win_length: int = 1200,
        n_mels: int = 128,
        mel_floor: float = 1e-5,
    ) -> None:
        self.adv = adv
        self.fm = fm
        self.wave = wave
        self.mel = mel
        self.latent = latent
        self.code = code
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.n_mels = n_mels
        self.mel_floor = mel_floor

    @property
    def weights(self) -> dict[str, float]:
        """The weights by term name, checked to be finite and non-negative."""
        weights = {}
        for name in LOSS_TERMS:
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"loss weight {name} must be a finite number >= 0, got {value!r}")
            weights[name] = float(value)
        return weights

    def discriminator(
        self, real_outputs: ScaleOutputs, fake_outputs: ScaleOutputs
    ) -> dict[str, torch.Tensor]:
        """The discriminator's objective.

        Parameters
        ----------
        real_outputs : list
            Discriminator outputs on the target latents.
        fake_outputs : list
            Discriminator outputs on the generator's latents, *detached*.

        Returns
        -------
        dict
            ``{"d_hinge": ..., "total": ...}`` (equal: the hinge is the whole objective).
        """
        hinge = discriminator_hinge_loss(real_outputs, fake_outputs)
        return {"d_hinge": hinge, "total": hinge}

    def generator(
        self,
        fake_outputs: ScaleOutputs | None = None,
        real_outputs: ScaleOutputs | None = None,
        fake_audio: torch.Tensor | None = None,
        real_audio: torch.Tensor | None = None,
        pred_latents: torch.Tensor | None = None,
        target_latents: torch.Tensor | None = None,
        quantized_target: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """The generator's objective and its terms.

        Only the inputs of terms with a non-zero weight are needed:
        ``adv`` reads ``fake_outputs``; ``fm`` ``fake_outputs`` and
        ``real_outputs``; ``wave`` and ``mel`` ``fake_audio`` (decoded with
        gradients, see the module docs) and ``real_audio``; ``latent``
        ``pred_latents`` and ``target_latents``; ``code`` ``pred_latents`` and
        ``quantized_target``.

        Parameters
        ----------
        fake_outputs, real_outputs : sequence, optional
            Discriminator outputs per scale (lists of layer outputs, logits last)
            for generated and real latents.
        fake_audio, real_audio : torch.Tensor, optional
            Decoded generated audio and the real audio, ``(batch, samples)``.
        pred_latents : torch.Tensor, optional
            The generator's latents ``(batch, emb_width, frames)``.
        target_latents : torch.Tensor, optional
            The codec's continuous latents of the real audio, same shape.
        quantized_target : torch.Tensor, optional
            The codebook vectors of the real audio's codes, same shape.

        Returns
        -------
        dict of str to torch.Tensor
            The unweighted terms ``adv``, ``fm``, ``wave``, ``mel``, ``latent``,
            ``code`` (0 where the weight is 0) and the weighted ``total``.

        Raises
        ------
        ValueError
            When a term with a non-zero weight lacks one of its inputs.
        """
        weights = self.weights
        given = {
            "fake_outputs": fake_outputs,
            "real_outputs": real_outputs,
            "fake_audio": fake_audio,
            "real_audio": real_audio,
            "pred_latents": pred_latents,
            "target_latents": target_latents,
            "quantized_target": quantized_target,
        }
        needs = {
            "adv": ("fake_outputs",),
            "fm": ("fake_outputs", "real_outputs"),
            "wave": ("fake_audio", "real_audio"),
            "mel": ("fake_audio", "real_audio"),
            "latent": ("pred_latents", "target_latents"),
            "code": ("pred_latents", "quantized_target"),
        }
        for term, inputs in needs.items():
            missing = [name for name in inputs if weights[term] and given[name] is None]
            if missing:
                raise ValueError(
                    f"the {term!r} term has weight {weights[term]} but {', '.join(missing)} "
                    "was not given (set its weight to 0 to skip it)"
                )
        compute = {
            "adv": lambda: generator_hinge_loss(fake_outputs),
            "fm": lambda: feature_matching_loss(real_outputs, fake_outputs),
            "wave": lambda: waveform_l1_loss(real_audio, fake_audio),
            "mel": lambda: mel_l1_loss(
                real_audio,
                fake_audio,
                sample_rate=self.sample_rate,
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                win_length=self.win_length,
                n_mels=self.n_mels,
                floor=self.mel_floor,
            ),
            "latent": lambda: latent_l1_loss(pred_latents, target_latents),
            "code": lambda: code_l1_loss(pred_latents, quantized_target),
        }
        device = next((t.device for t in _tensors(given.values())), torch.device("cpu"))
        terms: dict[str, Any] = {}
        total = torch.zeros((), device=device)
        for term in LOSS_TERMS:
            if weights[term]:
                value = compute[term]()
                total = total + weights[term] * value
            else:
                value = torch.zeros((), device=device)
            terms[term] = value
        terms["total"] = total
        return terms


def _tensors(values: Any) -> Any:
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, list | tuple):
            yield from _tensors(value)
