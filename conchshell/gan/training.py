"""Adversarial training of the generator: its state, one step, checkpoints, rollback.

:class:`GANTrainer` holds everything a GAN run carries from one step to the
next (the two modules, their optimisers and learning-rate schedulers, the
data-order and augmentation random generators, the step count and the
history) and writes it to, or restores it from, a folder of checkpoints.
:func:`gan_step` is the one adversarial step; the estimator and the tests
both run this function.

A checkpoint is a safetensors file ``step-<step>.safetensors`` (tensors in
the body, everything else as JSON in the header, so reading one runs no
code). A fault (a non-finite loss or gradient) skips that network's update
and is recorded in the history; after ``max_bad_steps`` consecutive faults
the run returns to the newest readable checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from conchshell._version import __version__
from conchshell.data.audio import fit_length
from conchshell.io import load_tree, save_tree
from conchshell.levels import level_name
from conchshell.training import TrainingLog, finite_everywhere, guarded_step, save_history

__all__ = [
    "CheckpointFolder",
    "GANTrainer",
    "build_gan",
    "crop_window",
    "gan_step",
    "make_optimizers",
    "run_identity",
    "train_gan",
    "warm_start",
]

CKPT_PREFIX = "step-"


# Parameters that may change between a run and its resumption without making it another run.
_RESUMABLE = {
    "max_steps",
    "max_time",
    "verbose",
    "device",
    "checkpoint_dir",
    "checkpoint_every",
    "keep_checkpoints",
    "max_bad_steps",
}


def run_identity(
    model: Any, seed: int, images: torch.Tensor, categories: torch.Tensor, dataset: Any
) -> dict[str, Any]:
    """What makes a training run this run: its seed, parameters and data.

    Parameters
    ----------
    model : ImageToMusic
        The estimator being fitted.
    seed : int
        Its seed.
    images : torch.Tensor of shape (n, 3, 224, 224)
    categories : torch.Tensor of shape (n,)
    dataset : PairDataset
        Its audio files (or clips) are part of the data.

    Returns
    -------
    dict
        ``seed``, and SHA-256 digests of the parameters (those that may
        change on resumption, such as ``max_steps``, left out) and of the
        data (images, categories, and the audio files' paths and sizes, or
        the clips themselves for in-memory data).
    """
    from conchshell.persistence import describe

    # random_state is part of the identity through the seed it gives.
    skip = _RESUMABLE | {"random_state"}
    params = {k: v for k, v in describe(model)["params"].items() if k not in skip}
    if params.get("gan_crop", 0) is None:
        del params["gan_crop"]  # unset: the identity of runs from before it existed
    param_digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    data = hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes())
    data.update(categories.cpu().numpy().astype(np.int64).tobytes())
    paths = getattr(dataset, "audio_paths", None)
    if paths and all(p is not None for p in paths):
        for p in paths:
            p = Path(p)
            data.update(f"{p.name}:{p.stat().st_size if p.is_file() else -1};".encode())
    else:
        data.update(torch.as_tensor(dataset.stack_audio()).contiguous().numpy().tobytes())
    return {"seed": int(seed), "params": param_digest.hexdigest(), "data": data.hexdigest()}


def make_optimizers(
    generator: torch.nn.Module,
    discriminator: torch.nn.Module,
    *,
    lr_g: float,
    lr_d: float,
    betas: tuple[float, float],
    weight_decay: float,
    lr_step: int,
    lr_gamma_g: float,
    lr_gamma_d: float,
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, Any, Any]:
    """AdamW for each network with a step decay of its rate (the paper's schedule).

    Parameters
    ----------
    generator, discriminator : torch.nn.Module
        The networks.
    lr_g, lr_d, betas, weight_decay, lr_step, lr_gamma_g, lr_gamma_d
        As in :class:`~conchshell.estimator.ImageToMusic`.

    Returns
    -------
    opt_g, opt_d, sched_g, sched_d
        The optimisers and their ``StepLR`` schedulers.
    """
    betas = (float(betas[0]), float(betas[1]))
    opt_g = torch.optim.AdamW(
        generator.parameters(), lr=lr_g, betas=betas, weight_decay=weight_decay
    )
    opt_d = torch.optim.AdamW(
        discriminator.parameters(), lr=lr_d, betas=betas, weight_decay=weight_decay
    )
    sched_g = torch.optim.lr_scheduler.StepLR(opt_g, lr_step, gamma=lr_gamma_g)
    sched_d = torch.optim.lr_scheduler.StepLR(opt_d, lr_step, gamma=lr_gamma_d)
    return opt_g, opt_d, sched_g, sched_d


def gan_step(
    g_model: torch.nn.Module,
    d_model: torch.nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    codec: Any,
    loss: Any,
    features: torch.Tensor,
    categories: torch.Tensor,
    audio: torch.Tensor,
    level: int,
    *,
    crop: int | None = None,
    offsets: torch.Tensor | None = None,
    precision: str = "float32",
    timings: dict[str, float] | None = None,
    noise: torch.Tensor | None = None,
) -> dict[str, Any]:
    """One discriminator update, then one generator update.

    Parameters
    ----------
    g_model, d_model : torch.nn.Module
        Generator ``(features, categories) -> latents`` and multi-scale
        discriminator (possibly wrapped in DistributedDataParallel).
    opt_g, opt_d : torch.optim.Optimizer
        Their optimisers.
    codec : JukeboxCodec
        Frozen codec: encodes the real clips, quantises and decodes the fakes.
    loss : ConchShellLoss
        The weighted loss terms.
    features : torch.Tensor of shape (batch, in_features)
    categories : torch.Tensor of shape (batch,), int
    audio : torch.Tensor of shape (batch, samples)
        The real clips paired with the features.
    level : int
        Jukebox level index of the latents.
    crop : int or None, default=None
        Latent frames the discriminator and the losses see. ``None`` (or at
        least the sequence length) shows them the whole sequence, as the
        paper; otherwise each clip shows one window of ``crop`` frames (see
        :func:`crop_window`), the same for its real and generated latents,
        and the audio terms compare the decoded window with the real samples
        it covers.
    offsets : torch.Tensor of shape (batch,), int, optional
        First frame of each clip's window; ``None`` draws them from torch's
        global generator. Only read with a ``crop``.
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the discriminator's passes: ``"bfloat16"`` autocasts
        them (its weights, gradients and outputs stay float32).
    timings : dict or None, default=None
        When given, gains the seconds of each part of the step (``generate``,
        ``d_pass``, ``g_pass``, ``audio``, ``g_backward``), added to what it
        holds.
    noise : torch.Tensor of shape (batch, noise_dim), optional
        The generator's noise input, for a generator that has one (drawn
        by the generator from torch's global stream when omitted).

    Returns
    -------
    dict
        ``d_total`` and the discriminator's terms, ``g_total`` and the
        generator's ``g_<term>``; ``skipped_d`` / ``skipped_g`` name the
        reason when that network's update was skipped.
    """
    clock = _Clock(timings)
    discriminate = _autocast(d_model, precision)
    inputs = (features, categories) if noise is None else (features, categories, noise)
    if crop is None:
        with torch.no_grad():
            real = codec.transform(audio, level=level)
        fake = fake_full = g_model(*inputs)
    else:
        fake_full = g_model(*inputs)
        real, fake, audio = crop_window(codec, audio, fake_full, level, crop, offsets)
    clock("generate")
    # Real and detached fake latents in one forward pass: DDP allows one forward
    # per backward.
    both = discriminate(torch.cat([real, fake.detach()]))
    n = real.shape[0]
    d_real = [[t[:n] for t in scale] for scale in both]
    d_fake = [[t[n:] for t in scale] for scale in both]
    d_terms = loss.discriminator(d_real, d_fake)
    record: dict[str, Any] = {
        ("d_total" if k == "total" else k): float(v.detach()) for k, v in d_terms.items()
    }
    opt_d.zero_grad(set_to_none=True)
    guarded_step(d_terms["total"], d_model, opt_d, record, "skipped_d")
    clock("d_pass")
    if not finite_everywhere(fake_full):
        # The codec refuses non-finite latents: skip the generator's update instead.
        record["skipped_g"] = "non-finite output"
        opt_d.zero_grad(set_to_none=True)
        return record
    # The wave and mel terms pass through straight-through quantisation and the
    # frozen, differentiable decoder, so they reach the generator.
    fake_out = discriminate(fake)
    with torch.no_grad():
        real_out = discriminate(real)
        target_q, _ = codec.quantize(real, level=level)
    clock("g_pass")
    fake_q, _ = codec.quantize(fake, level=level)
    fake_audio = codec.decode(fake_q, level=level)[..., : audio.shape[-1]]
    g_terms = loss.generator(
        fake_outputs=fake_out,
        real_outputs=real_out,
        fake_audio=fake_audio,
        real_audio=audio,
        pred_latents=fake,
        target_latents=real,
        quantized_target=target_q,
    )
    record.update({f"g_{k}": float(v.detach()) for k, v in g_terms.items()})
    clock("audio")
    opt_g.zero_grad(set_to_none=True)
    guarded_step(g_terms["total"], g_model, opt_g, record, "skipped_g")
    opt_d.zero_grad(set_to_none=True)  # the generator's backward left gradients in D
    clock("g_backward")
    return record


def crop_window(
    codec: Any,
    audio: torch.Tensor,
    fake: torch.Tensor,
    level: int,
    crop: int,
    offsets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One window of ``crop`` latent frames per clip: real latents, fake latents, real audio.

    Clip ``i``'s window is frames ``offsets[i]`` to ``offsets[i] + crop`` of
    both its generated and its real latents, and samples ``offsets[i] * hop``
    to ``(offsets[i] + crop) * hop`` of its audio (zero-padded to a whole hop,
    as the codec pads it). The real latents are the codec's latents of the
    whole clip at those frames, computed from the audio the window depends on
    (the window widened by the encoder's receptive field), so a short window
    is cheap to encode.

    Parameters
    ----------
    codec : JukeboxCodec
        Encodes the real audio; gives the hop and receptive field of ``level``.
    audio : torch.Tensor of shape (batch, samples)
        The real clips.
    fake : torch.Tensor of shape (batch, channels, frames)
        The generator's latents of those clips (the graph is kept).
    level : int
        Jukebox level index.
    crop : int
        Frames per window; at least ``frames`` returns the whole sequences
        (the real latents encoded from the whole clips).
    offsets : torch.Tensor of shape (batch,), int, or None
        First frame of each window, in ``[0, frames - crop]``; ``None`` draws
        them from torch's global generator.

    Returns
    -------
    real, fake : torch.Tensor of shape (batch, channels, crop)
        The real latents without gradient; the fake ones keep the graph.
    audio : torch.Tensor of shape (batch, crop * hop)
    """
    frames = fake.shape[-1]
    if crop >= frames:
        with torch.no_grad():
            return codec.transform(audio, level=level), fake, audio
    batch, hop = fake.shape[0], codec.hop_length(level)
    if offsets is None:
        offsets = torch.randint(0, frames - crop + 1, (batch,))
    starts = [int(o) for o in offsets]
    if len(starts) != batch or not all(0 <= o <= frames - crop for o in starts):
        raise ValueError(f"offsets must be {batch} frames in [0, {frames - crop}], got {starts}")
    audio = torch.nn.functional.pad(audio, (0, max(frames * hop - audio.shape[-1], 0)))
    # Encode each window widened by the receptive field, clamped inside the clip
    # (where encoding the whole clip sees the same zero padding).
    margin = -(-codec.receptive_field(level) // hop)
    span = min(frames, crop + 2 * margin)
    firsts = [min(max(o - margin, 0), frames - span) for o in starts]
    wide = torch.stack([audio[i, f * hop : (f + span) * hop] for i, f in enumerate(firsts)])
    with torch.no_grad():
        real = codec.transform(wide, level=level)

    def window(x: torch.Tensor, i: int, first: int = 0) -> torch.Tensor:
        return x[i, :, starts[i] - first : starts[i] - first + crop]

    return (
        torch.stack([window(real, i, f) for i, f in enumerate(firsts)]),
        torch.stack([window(fake, i) for i in range(batch)]),
        torch.stack([audio[i, o * hop : (o + crop) * hop] for i, o in enumerate(starts)]),
    )


def _autocast(d_model: torch.nn.Module, precision: str) -> Callable[[torch.Tensor], Any]:
    """``d_model`` run in ``precision`` ("float32" or "bfloat16"), its outputs in float32."""
    if precision == "float32":
        return d_model
    if precision != "bfloat16":
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")

    def run(latents: torch.Tensor) -> list[list[torch.Tensor]]:
        with torch.autocast(latents.device.type, dtype=torch.bfloat16):
            outputs = d_model(latents)
        return [[t.float() for t in scale] for scale in outputs]

    return run


class _Clock:
    """Adds the seconds since its previous call to ``timings[name]`` (nothing without a dict)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.timings is None:
            return
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now


class CheckpointFolder:
    """The newest ``keep`` checkpoints of a run, in one folder.

    Parameters
    ----------
    folder : Path
        Where ``step-<step>.safetensors`` and ``history.json`` live.
    keep : int
        How many of the newest checkpoints to keep.
    """

    def __init__(self, folder: str | Path, keep: int) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.run: dict[str, Any] | None = None

    @property
    def stages(self) -> Path:
        """The checkpoint of the stages before the GAN (image side and codec)."""
        return self.folder / "stages.safetensors"

    def open(self, run: dict[str, Any], resume: bool, is_main: bool = True) -> None:
        """Take the folder for the run ``run`` (see :func:`run_identity`).

        A fresh run refuses a folder that holds checkpoints. A resumed one
        refuses checkpoints of another run as it reads them (:meth:`check_run`,
        called by :meth:`latest` and :func:`conchshell.persistence.load_stages`).

        Parameters
        ----------
        run : dict
            The run's identity.
        resume : bool
            Whether the fit continues from the folder's checkpoints.
        is_main : bool, default=True
            Only the main process touches the folder.

        Raises
        ------
        ValueError
            Naming the folder or file and what differs.
        """
        self.run = run
        if not is_main:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        found = [p for p in (self.stages, *self.paths()) if p.is_file()]
        if not resume:
            if found:
                names = ", ".join(p.name for p in found[:3])
                raise ValueError(
                    f"checkpoint_dir {self.folder} already holds checkpoints of a run ({names}); "
                    "fit(..., resume=True) continues that run, or empty the folder or choose "
                    "another to start afresh"
                )
            return
        # A process killed while writing leaves its temporary file: clear it.
        for stale in self.folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def check_run(self, saved: object, path: Path) -> None:
        """Refuse a checkpoint whose run identity is not this run's.

        Parameters
        ----------
        saved : dict or None
            The identity stored in the checkpoint (None: written before they had one).
        path : Path
            The checkpoint, for the message.

        Raises
        ------
        ValueError
            When the seed, the parameters or the data differ.
        """
        if self.run is None or saved is None:
            return  # written before checkpoints carried their run (or no run to compare)
        if not isinstance(saved, dict):
            raise ValueError(f"checkpoint {path} carries a damaged run identity")
        differ = [k for k in ("seed", "params", "data") if saved.get(k) != self.run.get(k)]
        if differ:
            what = {"seed": "random seed", "params": "parameters", "data": "training data"}
            verb = "differ" if len(differ) > 1 or differ == ["params"] else "differs"
            raise ValueError(
                f"checkpoint {path} belongs to another run (its "
                f"{' and '.join(what[k] for k in differ)} {verb} from this fit's); resume with "
                "the settings and data it was written with, or use another checkpoint_dir"
            )

    def path(self, step: int) -> Path:
        """The file of the checkpoint of ``step``.

        Parameters
        ----------
        step : int

        Returns
        -------
        Path
        """
        return self.folder / f"{CKPT_PREFIX}{step:09d}.safetensors"

    def paths(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        return sorted(self.folder.glob(f"{CKPT_PREFIX}*.safetensors"))

    def write(self, state: dict[str, Any]) -> Path:
        """Write ``state`` (with its ``step`` and ``history``), then prune old ones.

        Parameters
        ----------
        state : dict
            :meth:`GANTrainer.state_dict`; the run identity is added.

        Returns
        -------
        Path
            The file written.
        """
        path = self.path(int(state["step"]))
        save_tree(path, {**state, "run": self.run})
        save_history(state["history"], self.folder / "history.json")
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> dict[str, Any] | None:
        """The newest readable checkpoint; a damaged one is skipped with a warning."""
        for path in reversed(self.paths()):
            try:
                state = load_tree(path)
            except ValueError as exc:
                warnings.warn(
                    f"checkpoint {path} is damaged ({exc}); falling back to the previous one",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            self.check_run(state.get("run"), path)
            state["path"] = str(path)
            return state
        return None


class GANTrainer:
    """The state of a GAN run and the loop that advances it.

    Parameters
    ----------
    generator, discriminator : torch.nn.Module
        The modules to train, already on ``device``.
    codec : JukeboxCodec
        Frozen codec of the latents.
    loss : ConchShellLoss
        The weighted loss terms.
    level : int
        Jukebox level index.
    n_samples : int
        Clip length in samples.
    dist : DistContext
        Process group context (:mod:`conchshell.distributed`).
    device : torch.device
    seed : int
        Seeds the data order, the augmentation and the crop windows.
    batch_size, max_steps, max_time, checkpoint_every, max_bad_steps, verbose, gan_crop
        As in :class:`~conchshell.estimator.ImageToMusic`.
    checkpoints : CheckpointFolder or None
        Where to write checkpoints; ``None`` writes none.
    **optim
        Keyword arguments of :func:`make_optimizers`.

    Attributes
    ----------
    step : int
        GAN steps done.
    history : list of dict
        One record per step: the loss terms, ``step``, ``lr_g``, ``lr_d``,
        ``seconds`` and ``n_skipped`` (see :class:`conchshell.training.TrainingLog`).
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        discriminator: torch.nn.Module,
        codec: Any,
        loss: Any,
        *,
        level: int,
        n_samples: int,
        dist: Any,
        device: torch.device,
        seed: int,
        batch_size: int,
        max_steps: int,
        max_time: float | None,
        checkpoint_every: int,
        max_bad_steps: int,
        checkpoints: CheckpointFolder | None,
        verbose: int,
        gan_crop: int | None = None,
        **optim: Any,
    ) -> None:
        self.generator, self.discriminator = generator, discriminator
        self.codec, self.loss, self.level, self.n_samples = codec, loss, level, n_samples
        self.dist, self.device = dist, device
        self.batch_size, self.max_steps, self.max_time = batch_size, max_steps, max_time
        self.checkpoint_every, self.max_bad_steps = checkpoint_every, max_bad_steps
        self.verbose, self.checkpoints = verbose, checkpoints
        self.g_model = dist.wrap(generator, device)
        self.d_model = dist.wrap(discriminator, device)
        self.opt_g, self.opt_d, self.sched_g, self.sched_d = make_optimizers(
            generator, discriminator, **optim
        )
        self.order = torch.Generator().manual_seed(seed)
        self.aug = np.random.default_rng(seed)
        # The crop windows have their own stream: a crop leaves the data order and augmentation.
        self.crop = gan_crop
        self.crops = torch.Generator().manual_seed(_derived_seed(seed, "crop"))
        # And the generator's noise input (if it has one) its own, so a fit is reproducible.
        self.noise = torch.Generator().manual_seed(_derived_seed(seed, "noise"))
        self.noise_dim = int(getattr(generator, "noise_dim", 0))
        self.step = 0
        self.queue: list[int] = []  # what is left of the current epoch's permutation
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run bit for bit."""
        return {
            "version": __version__,
            "step": self.step,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "order_rng": self.order.get_state(),
            "aug_rng": json.dumps(self.aug.bit_generator.state),
            "crop_rng": self.crops.get_state(),
            "noise_rng": self.noise.get_state(),
            "torch_rng": torch.get_rng_state(),
            "queue": list(self.queue),
            "history": self.history,
        }

    def load_trainables(self, state: dict[str, Any]) -> None:
        """Restore weights, optimisers, schedulers and history (not the data stream).

        Parameters
        ----------
        state : dict
            A checkpoint (:meth:`state_dict`).
        """
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_g.load_state_dict(state["sched_g"])
            self.sched_d.load_state_dict(state["sched_d"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise _mismatch(Path(state.get("path", "?")), exc) from exc
        self.history = list(state["history"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a full :meth:`state_dict`, data stream and random state included.

        Parameters
        ----------
        state : dict
            A checkpoint (:meth:`state_dict`).
        """
        self.load_trainables(state)
        self.order.set_state(state["order_rng"])
        self.aug.bit_generator.state = json.loads(state["aug_rng"])
        if "crop_rng" in state:  # written before crops existed: nothing was drawn
            self.crops.set_state(state["crop_rng"])
        if "noise_rng" in state:  # likewise before the noise input
            self.noise.set_state(state["noise_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.queue = list(state["queue"])

    # ------------------------------------------------------------------- loop
    def _batch(self, n: int) -> list[int]:
        """This process's share of the next global batch, epoch by epoch."""
        world = self.dist.world_size
        while len(self.queue) < self.batch_size * world:
            self.queue.extend(torch.randperm(n, generator=self.order).tolist())
        batch = self.queue[: self.batch_size * world]
        self.queue = self.queue[self.batch_size * world :]
        return batch[self.dist.rank :: world]

    def _noise(self, n: int) -> torch.Tensor | None:
        """The generator's noise for ``n`` clips, from the run's own stream (None without)."""
        if not self.noise_dim:
            return None
        return torch.randn(n, self.noise_dim, generator=self.noise).to(self.device)

    def _window(self) -> dict[str, Any]:
        """``gan_step``'s crop and this process's window offsets (none without a crop)."""
        frames = self.codec.latent_length(self.n_samples, self.level)
        if self.crop is None or self.crop >= frames:
            return {}
        # Every rank draws the global batch's offsets, so the stream stays the same on all.
        world = self.dist.world_size
        offsets = torch.randint(
            0, frames - self.crop + 1, (self.batch_size * world,), generator=self.crops
        )
        return {"crop": self.crop, "offsets": offsets[self.dist.rank :: world]}

    def fit(
        self,
        features: torch.Tensor,
        categories: torch.Tensor,
        clips: Callable[[list[int], np.random.Generator], torch.Tensor],
    ) -> list[dict[str, Any]]:
        """Train until ``max_steps`` or ``max_time``.

        Parameters
        ----------
        features : torch.Tensor of shape (n, in_features)
            Cached extractor features of the training images.
        categories : torch.Tensor of shape (n,)
        clips : callable
            ``clips(indices, rng)`` returns the (augmented) training clips of
            those items, shape ``(len(indices), n_samples)``.

        Returns
        -------
        list of dict
            The history.
        """
        self.generator.train()
        self.discriminator.train()
        bad = 0  # consecutive steps with a skipped (non-finite) update
        due = False  # a checkpoint is due but waits for a step without faults
        rollbacks: dict[int, int] = {}
        pending: dict[str, Any] | None = None
        log = TrainingLog(
            desc="GAN",
            total=self.max_steps,
            verbose=self.verbose and self.dist.is_main,
            initial=self.step,
            history=self.history,
            max_time=self.max_time,
        )
        with log:
            while self.step < self.max_steps:
                mine = self._batch(len(features))
                idx = torch.as_tensor(mine)
                record = gan_step(
                    self.g_model,
                    self.d_model,
                    self.opt_g,
                    self.opt_d,
                    self.codec,
                    self.loss,
                    features[idx].to(self.device),
                    categories[idx].to(self.device),
                    clips(mine, self.aug).to(self.device),
                    self.level,
                    noise=self._noise(len(mine)),
                    **self._window(),
                )
                self.step += 1
                self.sched_g.step()
                self.sched_d.step()
                record.update(
                    step=self.step,
                    lr_g=self.sched_g.get_last_lr()[0],
                    lr_d=self.sched_d.get_last_lr()[0],
                )
                if pending is not None:
                    record["rollback"], pending = pending, None
                nan = float("nan")
                log.log(record, g=record.get("g_total", nan), d=record.get("d_total", nan))
                bad = bad + 1 if ("skipped_d" in record or "skipped_g" in record) else 0
                last = self.step == self.max_steps or self._out_of_time(log)
                if self.max_bad_steps and bad >= self.max_bad_steps and not last:
                    pending = self._roll_back(bad, rollbacks)
                    bad, due = 0, False
                    # The history is the checkpoint's now: the log goes on from it.
                    log.history = self.history
                    log.n_skipped = int(self.history[-1].get("n_skipped", 0)) if self.history else 0
                    log.bar.n = self.step
                    log.bar.refresh()
                    continue
                due = due or self.step % self.checkpoint_every == 0
                # A checkpoint never captures a faulty step, so a rollback returns to a sound one.
                if self.checkpoints is not None and ((due and bad == 0) or last):
                    due = False
                    if self.dist.is_main:
                        self.checkpoints.write(self.state_dict())
                    self.dist.barrier()
                if last:
                    break
        self.generator.eval()
        self.discriminator.eval()
        return self.history

    def resume(self) -> bool:
        """Continue from the newest readable checkpoint; False when there is none."""
        state = self.checkpoints.latest() if self.checkpoints is not None else None
        if state is None:
            return False
        self.load_state_dict(state)
        return True

    def _out_of_time(self, log: TrainingLog) -> bool:
        if self.max_time is None:
            return False
        over = torch.tensor(float(log.out_of_time()))
        if self.dist.enabled:
            torch.distributed.broadcast(over, src=0)  # every rank stops at the same step
        return bool(over.item())

    def _roll_back(self, bad: int, rollbacks: dict[int, int]) -> dict[str, Any]:
        """Return to the newest checkpoint after ``bad`` consecutive faulty steps."""
        step = self.step
        state = self.checkpoints.latest() if self.checkpoints is not None else None
        if state is None:
            raise RuntimeError(
                f"training diverged: {bad} consecutive steps up to step {step} had a non-finite "
                "loss or gradient, and there is no checkpoint to roll back to (set "
                "checkpoint_dir, or lower lr_g/lr_d)"
            )
        target = int(state["step"])
        rollbacks[target] = rollbacks.get(target, 0) + 1
        if rollbacks[target] > 3:
            raise RuntimeError(
                f"training diverged: rolled back to the checkpoint of step {target} three times "
                f"and it failed again ({bad} consecutive faulty steps up to step {step}); "
                "lower lr_g/lr_d or check the data for NaN/Inf"
            )
        self.load_trainables(state)
        self.step = target
        warnings.warn(
            f"{bad} consecutive non-finite steps up to step {step}: rolled back to the "
            f"checkpoint of step {target}",
            RuntimeWarning,
            stacklevel=4,
        )
        return {"from_step": step, "to_step": target, "bad_steps": bad}


def _mismatch(path: Path, exc: BaseException) -> ValueError:
    """A checkpoint written for another configuration: say so instead of torch's dump."""
    detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])
    return ValueError(
        f"checkpoint {path} does not fit this model (was it written with other parameters?): "
        f"{detail[:300]}; resume with the parameters it was written with, or use another "
        "checkpoint_dir"
    )


# The estimator's parameters that configure the GAN stage (GANTrainer's keywords).
_GAN_SETTINGS = (
    "batch_size max_steps max_time checkpoint_every max_bad_steps verbose "
    "lr_g lr_d betas weight_decay lr_step lr_gamma_g lr_gamma_d gan_crop"
).split()


def _derived_seed(seed: int, name: str) -> int:
    """A seed for the stream ``name``, derived from the run's seed."""
    digest = hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def build_gan(model: Any, in_features: int) -> None:
    """Build ``model``'s generator and discriminator at the sizes its other components imply.

    Parameters
    ----------
    model : ImageToMusic
        With its other components built.
    in_features : int
        The extractor's feature size.
    """
    level = level_name(model.level_)
    gen = model.generator_
    given = gen.get_params(deep=False).get("level")
    if given is not None and level_name(given) != level:
        raise ValueError(
            f"the generator is configured for level {given!r} but the estimator "
            f"for level {model.level!r}; set the level once, on the estimator"
        )
    if given is None:
        gen.set_params(level=level)
    if not hasattr(gen, "module_"):
        gen.initialize(
            in_features=in_features,
            n_categories=len(model.categories_),
            n_frames=model.codec_.latent_length(model._n_samples, model.level_),
            emb_width=model.codec_.get_params()["emb_width"],
        )
    if not hasattr(model.discriminator_, "module_"):
        model.discriminator_.initialize()
    _check_crop(model)


def _check_crop(model: Any) -> None:
    """Refuse a ``gan_crop`` too short for the discriminator or the mel loss."""
    crop, codec = model.gan_crop, model.codec_
    if crop is None or crop >= codec.latent_length(model._n_samples, model.level_):
        return
    width = codec.get_params()["emb_width"]
    need = -(-model.discriminator_.module_.min_length() // width)
    n_fft = getattr(model.loss_, "n_fft", 0) if getattr(model.loss_, "mel", 0) else 0
    # The mel spectrogram reflects n_fft // 2 samples at each end: the window must be longer.
    need = max(need, n_fft // 2 // codec.hop_length(model.level_) + 1)
    if crop < need:
        raise ValueError(
            f"gan_crop={crop} latent frames is too short at the {level_name(model.level_)!r} "
            f"level: the discriminator and the mel loss need at least {need}; raise it, or "
            "set it to None for the whole sequence"
        )


def warm_start(model: Any, dataset: Any, features: torch.Tensor, cats: torch.Tensor) -> None:
    """Fit ``model``'s generator on the codec's latents (before any adversarial training).

    A generator with ``snapped_targets`` gets the latents snapped to the
    codebook; one with ``needs_steps`` is given ``warm_start_steps`` steps.

    Parameters
    ----------
    model : ImageToMusic
        With its codec fitted and generator built.
    dataset : PairDataset
        The training pairs.
    features : torch.Tensor of shape (n, in_features)
    cats : torch.Tensor of shape (n,)
    """
    generator = model.generator_
    snap = getattr(generator, "snapped_targets", False)
    with torch.no_grad():
        audio = fit_length(dataset.stack_audio(), model._n_samples)
        parts = []
        for chunk in audio.split(8):
            z = model.codec_.transform(chunk.to(model.codec_.device_), level=model.level_)
            if snap:
                z = model.codec_.snap(z, level=model.level_)
            parts.append(z.cpu())
        targets = torch.cat(parts)
    if getattr(generator, "needs_steps", True):
        # Enough epochs for the steps asked: the generator's own max_epochs (10) would stop
        # sooner (the first shipped model took 470 of its 3000 steps so).
        per_epoch = math.ceil(len(features) / generator.batch_size)
        generator.set_params(
            max_steps=model.warm_start_steps,
            max_epochs=math.ceil(model.warm_start_steps / per_epoch),
            warm_start=True,
        )
    generator.fit(features, targets, cats)


def train_gan(
    model: Any,
    dataset: Any,
    features: torch.Tensor,
    cats: torch.Tensor,
    device: torch.device,
    dist: Any,
    seed: int,
    checkpoints: CheckpointFolder | None,
    resume: bool,
) -> None:
    """Run the adversarial stage of ``model`` (an ImageToMusic); sets its ``history_``.

    Parameters
    ----------
    model : ImageToMusic
        With every component built and the codec fitted.
    dataset : PairDataset
        The training pairs (their augmented clips are drawn per step).
    features : torch.Tensor of shape (n, in_features)
        Cached extractor features.
    cats : torch.Tensor of shape (n,)
    device : torch.device
    dist : DistContext
    seed : int
    checkpoints : CheckpointFolder or None
    resume : bool
        Continue from the newest checkpoint.
    """
    model.codec_.freeze()
    trainer = GANTrainer(
        model.generator_.module_.to(device),
        model.discriminator_.module_.to(device),
        model.codec_,
        model.loss_,
        level=model.level_,
        n_samples=model._n_samples,
        dist=dist,
        device=device,
        seed=seed,
        checkpoints=checkpoints,
        **{name: getattr(model, name) for name in _GAN_SETTINGS},
    )
    if resume:
        trainer.resume()
    model.history_ = trainer.fit(
        features,
        cats,
        lambda indices, rng: fit_length(dataset.training_audio(indices, rng), model._n_samples),
    )
