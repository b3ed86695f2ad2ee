"""TCNN: the paper's small scene classifier whose block outputs become a video.

ConchShell trains a six-layer CNN (TCNN-6) as a 6-way scene classifier, then
reads the feature maps of its convolutions to forge a time axis (see
:mod:`conchshell.image.forging`). Baseline-3 uses a deeper TCNN-18.

Layer lists
-----------
Every block is ``Conv2d -> ReLU``; a 2x2 max-pooling closes each of the six
stages, so a 224x224 image shrinks 224 -> 112 -> 56 -> 28 -> 14 -> 7 -> 3.
The classifier reads the flattened ``C x 3 x 3`` map: ``Linear(9C, 1000) ->
ReLU -> Dropout(0.4) -> Linear(1000, 256) -> ReLU -> Dropout(0.4) ->
Linear(256, n_categories)``.

TCNN-6 (the paper's; facts taken from the authors' code), one conv per stage:

====== ========= ====== ======== ========== ==========
stage  channels  kernel dilation resolution pool after
====== ========= ====== ======== ========== ==========
1      3 -> 16   7      2        224        yes
2      16 -> 32  7      1        112        yes
3      32 -> 64  5      2        56         yes
4      64 -> 128 5      1        28         yes
5      128->256  3      2        14         yes
6      256->128  3      1        7          yes
====== ========= ====== ======== ========== ==========

2,284,686 parameters and 827,507,200 MACs per 224x224 image (Table 1).

TCNN-18 (Baseline-3; the paper gives only its size, 7.543M parameters and
1.443G MACs, so this layer list is ours). Each stage opens with the TCNN-6
convolution of that stage (same kernel and dilation) and continues with
3x3 convolutions at the stage's width:

====== ======== ===================== ==========
stage  channels convolutions          resolution
====== ======== ===================== ==========
1      16       k7 d2, then 2 x k3    224
2      32       k7, then 1 x k3       112
3      32       k5 d2, then 2 x k3    56
4      64       k5, then 4 x k3       28
5      256      k3 d2, then 2 x k3    14
6      384      k3, then 1 x k3       7
====== ======== ===================== ==========

3 + 2 + 3 + 5 + 3 + 2 = 18 convolutions, classifier on 384 x 3 x 3 = 3456
values: 7,539,758 parameters (-0.04 %) and 1,445,571,072 MACs (+0.18 %).

Training
--------
:meth:`TCNNEncoder.fit` trains the network as a classifier (multi-stage
training, stage 1): AdamW, cross-entropy, random resized crops and flips,
early stopping on a held-out share of the training images with the best
epoch's weights restored. The defaults (a cosine learning rate from 1e-3,
crops down to 8 % of the area, mixup, label smoothing, weight decay 0.05,
the best of 60 epochs) were chosen by grouped 5-fold cross-validation on the
stand-in dataset: 0.632 against 0.486 for a plain constant-rate recipe,
better or equal on every fold (docs/training.md). The convolutions start
from He initialisation (normal, fan-out), as torchvision's plain VGG does:
with torch's default the normalisation-free stack learns far more slowly.
Pass ``groups`` to ``fit`` when the data hold augmented copies or tiles of
one photo.

Feature maps for forging
------------------------
:meth:`TCNNEncoder.transform` returns the output of every block (after its
ReLU, before any pooling) from the ordinary classification pass, so the maps
have the resolution of their stage (224, 112, 56, ... px) and the forger
resizes them to 224x224. The authors instead re-ran the six convolutions as a
chain without pooling, keeping every map at 224x224 (about 44 GMAC per
image); Algorithm 1 allows either, and the pooled pass costs nothing beyond
the classification itself.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import ClassifierMixin, TransformerMixin
from sklearn.model_selection import StratifiedGroupKFold, train_test_split
from torch import nn
from torch.nn import functional as F

from conchshell._validation import check_categories, check_positive_int, check_tensor
from conchshell.base import TorchComponent, load_state_dict_strictly, seeded
from conchshell.training import (
    EarlyStopping,
    TrainingLog,
    constant_schedule,
    cosine_schedule,
    guarded_step,
)

__all__ = ["TCNN", "TCNNEncoder", "TCNNModule"]

IMAGE_SIZE = 224
_N_STAGES = 6
_HIDDEN = (1000, 256)
_DROPOUT = 0.4

# The TCNN-6 convolution that opens each stage: (kernel, dilation).
_STAGE_CONVS = ((7, 2), (7, 1), (5, 2), (5, 1), (3, 2), (3, 1))


@dataclass(frozen=True)
class _Block:
    in_channels: int
    out_channels: int
    kernel: int
    dilation: int
    pool_after: bool


def _layer_list(stage_channels: Sequence[int], stage_depths: Sequence[int]) -> tuple[_Block, ...]:
    blocks = []
    c_in = 3
    for (kernel, dilation), c_out, depth in zip(
        _STAGE_CONVS, stage_channels, stage_depths, strict=True
    ):
        blocks.append(_Block(c_in, c_out, kernel, dilation, pool_after=depth == 1))
        for i in range(1, depth):
            blocks.append(_Block(c_out, c_out, 3, 1, pool_after=i == depth - 1))
        c_in = c_out
    return tuple(blocks)


# n_blocks -> layer list (see the module docstring for the tables).
ARCHITECTURES: dict[int, tuple[_Block, ...]] = {
    6: _layer_list((16, 32, 64, 128, 256, 128), (1, 1, 1, 1, 1, 1)),
    18: _layer_list((16, 32, 32, 64, 256, 384), (3, 2, 3, 5, 3, 2)),
}


def check_images(images: object, *, name: str = "images", size: int | None = None) -> torch.Tensor:
    """Validate a batch of normalised RGB images and return it as float32.

    Parameters
    ----------
    images : array-like or torch.Tensor of shape (batch, 3, height, width)
        Floating-point images, already normalised.
    name : str, default="images"
        How the input is called in error messages.
    size : int or None, default=None
        Required height and width, when the consumer needs a fixed size.

    Returns
    -------
    torch.Tensor
        The images as float32, on the device they came on.

    Raises
    ------
    ValueError
        On integer or boolean pixels (images must arrive normalised), a wrong
        rank or channel count, a wrong size, an empty batch, or NaN/Inf.
    TypeError
        On non-numeric input.
    """
    dtype = getattr(images, "dtype", None)
    if dtype is None and not isinstance(images, torch.Tensor):
        try:
            dtype = np.asarray(images).dtype
        except Exception:  # check_tensor gives the clear message below
            dtype = None
    if dtype is not None and (
        (isinstance(dtype, torch.dtype) and not dtype.is_floating_point)
        or (isinstance(dtype, np.dtype) and dtype.kind in "iub")
    ):
        raise ValueError(
            f"{name} must hold floating-point, already normalised pixels, got dtype {dtype} "
            "(convert and normalise them first, e.g. with conchshell.data)"
        )
    shape = (None, 3, size, size) if size is not None else (None, 3, None, None)
    return check_tensor(images, name=name, ndim=4, shape=shape)


class TCNNModule(nn.Module):
    """The TCNN network: convolution blocks, pooling and a classifier.

    Parameters
    ----------
    blocks : sequence of block specs
        The layer list (see :data:`ARCHITECTURES`).
    n_categories : int
        Number of classifier outputs.
    """

    def __init__(self, blocks: Sequence[_Block], n_categories: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(
                    b.in_channels,
                    b.out_channels,
                    b.kernel,
                    padding=b.dilation * (b.kernel - 1) // 2,
                    dilation=b.dilation,
                ),
                nn.ReLU(inplace=True),
            )
            for b in blocks
        )
        self.pool_after = tuple(b.pool_after for b in blocks)
        self.pool = nn.MaxPool2d(2)
        side = IMAGE_SIZE
        for _ in range(sum(self.pool_after)):
            side //= 2
        n_flat = blocks[-1].out_channels * side * side
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_flat, _HIDDEN[0]),
            nn.ReLU(inplace=True),
            nn.Dropout(_DROPOUT),
            nn.Linear(_HIDDEN[0], _HIDDEN[1]),
            nn.ReLU(inplace=True),
            nn.Dropout(_DROPOUT),
            nn.Linear(_HIDDEN[1], n_categories),
        )
        # He initialisation for the ReLU convolutions: with torch's default (uniform, a=sqrt(5))
        # this plain, normalisation-free stack trains far more slowly.
        for block in self.blocks:
            nn.init.kaiming_normal_(block[0].weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(block[0].bias)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the logits and every block's map (after ReLU, before pooling).

        Parameters
        ----------
        x : torch.Tensor
            Normalised images ``(batch, 3, H, W)``.

        Returns
        -------
        logits : torch.Tensor
            Shape ``(batch, n_categories)``.
        maps : list of torch.Tensor
            One ``(batch, C_i, H_i, W_i)`` map per block, in order.
        """
        maps = []
        for block, pool in zip(self.blocks, self.pool_after, strict=True):
            x = block(x)
            maps.append(x)
            if pool:
                x = self.pool(x)
        return self.classifier(x), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (batch, n_categories).

        Parameters
        ----------
        x : torch.Tensor
            Normalised images ``(batch, 3, H, W)``.

        Returns
        -------
        torch.Tensor
        """
        return self.forward_features(x)[0]


def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    # channels_last lets oneDNN/cuDNN pick their fast convolution kernels (about 1.5x here).
    return batch.to(device).contiguous(memory_format=torch.channels_last)


def _augment(batch: torch.Tensor, min_area: float) -> torch.Tensor:
    """Random horizontal flip and random resized crop, drawn per image."""
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.RandomResizedCrop(IMAGE_SIZE, scale=(min_area, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    )
    return torch.stack([transform(image) for image in batch])


class TCNNEncoder(ClassifierMixin, TransformerMixin, TorchComponent):
    """TCNN image encoder: a scene classifier whose block maps feed the forger.

    Parameters
    ----------
    n_blocks : {6, 18}, default=6
        TCNN-6 (the paper's image module) or TCNN-18 (Baseline-3). The layer
        lists are in the module documentation.
    n_categories : int, default=6
        Number of scene categories.
    weights : str or os.PathLike or None, default=None
        A safetensors file written by :meth:`save_weights`, loaded strictly
        when the module is built; ``fit`` then fine-tunes from it.
    max_epochs : int, default=60
        Upper bound on training epochs.
    lr : float, default=1e-3
        AdamW learning rate.
    lr_schedule : {"constant", "cosine"}, default="cosine"
        ``"cosine"`` anneals the learning rate from ``lr`` towards zero over
        ``max_epochs`` (set per epoch).
    weight_decay : float, default=0.05
        AdamW weight decay.
    label_smoothing : float, default=0.1
        Label smoothing of the training cross-entropy (the validation loss
        that early stopping watches stays unsmoothed).
    batch_size : int, default=16
        Batch size for training and for every inference method (it bounds
        the memory ``transform`` needs).
    validation_fraction : float, default=0.15
        Share of the training images held out (stratified when every class
        allows it) for early stopping. ``0`` trains for ``max_epochs``.
    patience : int, default=60
        Epochs without a lower validation loss before training stops; the
        weights of the best epoch are restored. The default lets the cosine
        schedule run its course: stopping at patience 20 cost one seed of
        three 11 points on the stand-in val split and gained nothing.
    augment : bool, default=True
        Random resized crops (``crop_area`` to 100 % of the area) and
        horizontal flips during training.
    crop_area : float, default=0.08
        Smallest share of the image area a random crop keeps (0.08 is
        torchvision's ImageNet default).
    mixup : float, default=0.4
        ``alpha`` of mixup: each training batch is blended with a shuffled
        copy of itself by a weight drawn from Beta(alpha, alpha), and so are
        the targets. ``0`` turns it off.
    mixed_precision : bool, default=False
        Run the training forward pass under bfloat16 autocast (weights and
        optimiser stay float32). About twice as fast on CPUs with bfloat16
        support and on recent GPUs.
    verbose : int, default=0
        ``>0`` shows a progress bar over epochs.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the module runs.
    random_state : int, RandomState or None, default=None
        Seeds the initial weights, the validation split, the batch order,
        the augmentation and dropout.

    Attributes
    ----------
    module_ : TCNNModule
        The network.
    classes_ : ndarray of shape (n_categories,)
        Category ids, ``0 .. n_categories - 1``.
    history_ : list of dict
        Per epoch, in :mod:`conchshell.training`'s format: ``epoch``, ``lr``,
        ``train_loss``, ``train_accuracy`` (over the batches whose update was
        not skipped), ``valid_loss``, ``valid_accuracy`` (NaN without a
        validation split), ``seconds`` (since ``fit`` started) and
        ``n_skipped`` (batches so far whose loss or gradient was not finite,
        so their update was skipped).
    best_epoch_ : int
        The epoch whose weights were kept.

    Examples
    --------
    >>> import torch
    >>> enc = TCNNEncoder(max_epochs=1, random_state=0, device="cpu")
    >>> images, labels = torch.randn(8, 3, 224, 224), torch.arange(8) % 6
    >>> maps = enc.fit(images, labels).transform(images[:2])
    >>> [tuple(m.shape[1:]) for m in maps][:2]
    [(16, 224, 224), (32, 112, 112)]
    """

    def __init__(
        self,
        n_blocks: int = 6,
        n_categories: int = 6,
        weights: str | os.PathLike | None = None,
        max_epochs: int = 60,
        lr: float = 1e-3,
        lr_schedule: str = "cosine",
        weight_decay: float = 0.05,
        label_smoothing: float = 0.1,
        batch_size: int = 16,
        validation_fraction: float = 0.15,
        patience: int = 60,
        augment: bool = True,
        crop_area: float = 0.08,
        mixup: float = 0.4,
        mixed_precision: bool = False,
        verbose: int = 0,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.n_blocks = n_blocks
        self.n_categories = n_categories
        self.weights = weights
        self.max_epochs = max_epochs
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.augment = augment
        self.crop_area = crop_area
        self.mixup = mixup
        self.mixed_precision = mixed_precision
        self.verbose = verbose
        self.device = device
        self.random_state = random_state

    # -- building ---------------------------------------------------------------------------

    def _check_architecture(self) -> None:
        if self.n_blocks not in ARCHITECTURES:
            raise ValueError(
                f"n_blocks must be one of {sorted(ARCHITECTURES)}, got {self.n_blocks!r}"
            )
        if not isinstance(self.n_categories, int | np.integer) or self.n_categories < 2:
            raise ValueError(f"n_categories must be an integer >= 2, got {self.n_categories!r}")

    def _build_module(self) -> TCNNModule:
        return TCNNModule(ARCHITECTURES[self.n_blocks], int(self.n_categories))

    def initialize(self) -> TCNNEncoder:
        """Build the network with seeded weights (or the ``weights`` file); do not train.

        Returns
        -------
        self
        """
        self._check_architecture()
        super().initialize()
        self.module_.to(memory_format=torch.channels_last)
        if self.weights is not None:
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            path = os.fspath(self.weights)
            if not os.path.isfile(path):
                raise ValueError(f"weights file {path!r} does not exist")
            try:
                state = load_file(path, device="cpu")
            except (SafetensorError, OSError) as exc:
                raise ValueError(
                    f"weights file {path!r} is not a readable safetensors file: {exc}"
                ) from exc
            load_state_dict_strictly(self.module_, state, source=f"weights file {path!r}")
        self.module_.eval()
        self.classes_ = np.arange(int(self.n_categories))
        return self

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write the network's weights to a safetensors file (``weights=`` reads it back).

        Parameters
        ----------
        path : str or os.PathLike
            Destination file.
        """
        from safetensors.torch import save_file

        self._check_initialized()
        state = {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        save_file(
            state,
            os.fspath(path),
            metadata={"n_blocks": str(self.n_blocks), "n_categories": str(self.n_categories)},
        )

    # -- training ---------------------------------------------------------------------------

    def _check_training_params(self) -> None:
        for name in ("max_epochs", "batch_size", "patience"):
            check_positive_int(getattr(self, name), name)
        for name in ("lr",):
            if not (isinstance(self.lr, int | float) and self.lr > 0):
                raise ValueError(f"{name} must be a positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.crop_area, int | float) and 0 < self.crop_area <= 1):
            raise ValueError(f"crop_area must lie in (0, 1], got {self.crop_area!r}")
        if not (isinstance(self.mixup, int | float) and self.mixup >= 0):
            raise ValueError(f"mixup must be >= 0, got {self.mixup!r}")
        smoothing = self.label_smoothing
        if not (isinstance(smoothing, int | float) and 0 <= smoothing < 1):
            raise ValueError(f"label_smoothing must lie in [0, 1), got {smoothing!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}"
            )
        frac = self.validation_fraction
        if not (isinstance(frac, int | float) and 0 <= frac < 1):
            raise ValueError(f"validation_fraction must lie in [0, 1), got {frac!r}")

    def _split(
        self, y: np.ndarray, groups: np.ndarray | None, rng: np.random.RandomState
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(y)
        index = np.arange(n)
        if self.validation_fraction == 0:
            return index, index[:0]
        n_valid = math.ceil(self.validation_fraction * n)
        if n_valid >= n:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves no training images "
                f"out of {n}; pass more images or validation_fraction=0"
            )
        if groups is not None:
            n_groups = len(np.unique(groups))
            if n_groups < 2:
                raise ValueError(f"groups must name at least 2 groups to split, got {n_groups}")
            # A fold of a stratified group k-fold: whole groups on one side. One large group
            # (a panorama's tiles) can still unbalance a fold, so keep the fold whose class
            # proportions are closest to the whole set's.
            # sklearn refuses more folds than the largest class has images, which a small
            # set (a cross-validation fold of a few photos) easily hits.
            largest = int(np.bincount(y).max())
            n_splits = min(n_groups, largest, max(2, round(1 / self.validation_fraction)))
            if n_splits < 2:
                raise ValueError(
                    f"cannot carve a grouped validation split from {n} images with at most one "
                    "image per category; pass more images or validation_fraction=0"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "least populated class" notes
                splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=rng)
                folds = list(splitter.split(index, y, groups))
            overall = np.bincount(y, minlength=y.max() + 1) / n

            def imbalance(fold: tuple[np.ndarray, np.ndarray]) -> float:
                share = np.bincount(y[fold[1]], minlength=len(overall)) / len(fold[1])
                return float(np.abs(share - overall).sum())

            return min(folds, key=imbalance)
        counts = np.bincount(y)
        counts = counts[counts > 0]
        stratify = y if counts.min() >= 2 and n_valid >= len(counts) else None
        train, valid = train_test_split(
            index, test_size=n_valid, stratify=stratify, random_state=rng
        )
        return np.sort(train), np.sort(valid)

    def fit(self, images: object, categories: object, groups: object = None) -> TCNNEncoder:
        """Train the network as a scene classifier.

        Parameters
        ----------
        images : array-like or torch.Tensor of shape (n_images, 3, 224, 224)
            Normalised RGB images.
        categories : array-like of shape (n_images,)
            Integer category ids in ``[0, n_categories)``.
        groups : array-like of shape (n_images,), optional
            Group labels (the original photo of augmented copies, the panorama
            of tiles). With them the early-stopping split keeps each group on
            one side (one fold of a stratified group k-fold with about
            ``1 / validation_fraction`` folds), so the validation loss is not
            measured on near-copies of training images.

        Returns
        -------
        self
        """
        self._check_architecture()
        self._check_training_params()
        x = check_images(images, size=IMAGE_SIZE)
        y = check_categories(categories, n_samples=len(x), n_categories=self.n_categories)
        self.initialize()
        x, y = x.cpu(), y.cpu()
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (len(x),):
                raise ValueError(
                    f"groups must have one label per image, shape ({len(x)},), got {groups.shape}"
                )
        train_idx, valid_idx = self._split(y.numpy(), groups, np.random.RandomState(self.seed_))
        module, device = self.module_, self.device_
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        if self.lr_schedule == "cosine":  # stepped once per epoch
            schedule = cosine_schedule(optimizer, int(self.max_epochs))
        else:
            schedule = constant_schedule(optimizer)
        stopper = EarlyStopping(int(self.patience))
        self.history_, self.best_epoch_ = [], 0
        log = TrainingLog(
            desc="TCNN",
            total=int(self.max_epochs),
            verbose=self.verbose,
            unit="epoch",
            history=self.history_,
        )
        with log, seeded(self.seed_ + 1):  # batch order, crops, flips and dropout
            for epoch in range(1, self.max_epochs + 1):
                module.train()
                order = train_idx[torch.randperm(len(train_idx)).numpy()]
                loss_sum, correct, seen = 0.0, 0, 0
                for begin in range(0, len(order), self.batch_size):
                    batch = order[begin : begin + self.batch_size]
                    xb = x[batch]
                    if self.augment:
                        xb = _augment(xb, float(self.crop_area))
                    xb, yb = _to_device(xb, device), y[batch].to(device)
                    weight, partner = 1.0, None
                    if self.mixup > 0 and len(batch) > 1:
                        # torch's generator, seeded above: reproducible for a random_state
                        alpha = torch.tensor(float(self.mixup))
                        weight = float(torch.distributions.Beta(alpha, alpha).sample())
                        partner = torch.randperm(len(batch), device=device)
                        xb = weight * xb + (1.0 - weight) * xb[partner]
                    with torch.autocast(
                        device.type, dtype=torch.bfloat16, enabled=bool(self.mixed_precision)
                    ):
                        logits = module(xb)
                    logits = logits.float()  # the loss in float32, also under bf16 autocast
                    smoothing = float(self.label_smoothing)
                    loss = weight * F.cross_entropy(logits, yb, label_smoothing=smoothing)
                    if partner is not None:
                        loss = loss + (1.0 - weight) * F.cross_entropy(
                            logits, yb[partner], label_smoothing=smoothing
                        )
                    optimizer.zero_grad(set_to_none=True)
                    # One record per epoch: a skipped batch is counted, not recorded.
                    if not guarded_step(loss, module, optimizer, {"epoch": epoch}, desc="TCNN"):
                        log.count_skipped()
                        continue
                    loss_sum += loss.item() * len(batch)
                    correct += int((logits.argmax(1) == yb).sum())
                    seen += len(batch)
                record = {
                    "epoch": epoch,
                    "lr": optimizer.param_groups[0]["lr"],
                    # over the batches that updated the weights (all of them, unless skipped)
                    "train_loss": loss_sum / seen if seen else math.nan,
                    "train_accuracy": correct / seen if seen else math.nan,
                    "valid_loss": math.nan,
                    "valid_accuracy": math.nan,
                }
                if len(valid_idx):
                    logits = self._logits(x[valid_idx])
                    yv = y[valid_idx].to(logits.device)
                    record["valid_loss"] = float(F.cross_entropy(logits, yv))
                    record["valid_accuracy"] = float((logits.argmax(1) == yv).float().mean())
                log.log(record, loss="train_loss", val_loss="valid_loss", val_acc="valid_accuracy")
                schedule.step()
                if not len(valid_idx):
                    self.best_epoch_ = epoch
                    continue
                if stopper.update(record["valid_loss"], module, epoch):
                    break
        if stopper.restore(module):  # kept only with a validation split
            self.best_epoch_ = stopper.best_epoch
        module.eval()
        return self

    # -- inference --------------------------------------------------------------------------

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        self.module_.eval()
        out = []
        with torch.inference_mode():
            for begin in range(0, len(x), self.batch_size):
                out.append(
                    self.module_(_to_device(x[begin : begin + self.batch_size], self.device_))
                )
        return torch.cat(out)

    def predict_proba(self, images: object) -> np.ndarray:
        """Class probabilities, shape (n_images, n_categories).

        Parameters
        ----------
        images : array-like or torch.Tensor of shape (n_images, 3, 224, 224)

        Returns
        -------
        ndarray of float32
        """
        self._check_initialized()
        x = check_images(images, size=IMAGE_SIZE)
        return torch.softmax(self._logits(x), dim=1).cpu().numpy()

    def predict(self, images: object) -> np.ndarray:
        """Predicted category ids, shape (n_images,).

        Parameters
        ----------
        images : array-like or torch.Tensor of shape (n_images, 3, 224, 224)

        Returns
        -------
        ndarray of int64
        """
        proba = self.predict_proba(images)
        return self.classes_[proba.argmax(axis=1)]

    def score(self, images: object, categories: object, sample_weight: object = None) -> float:
        """Accuracy of :meth:`predict` against ``categories``.

        Parameters
        ----------
        images : array-like or torch.Tensor of shape (n_images, 3, 224, 224)
        categories : array-like of shape (n_images,)
        sample_weight : array-like of shape (n_images,), optional

        Returns
        -------
        float
        """
        from sklearn.metrics import accuracy_score

        predicted = self.predict(images)
        y = check_categories(categories, n_samples=len(predicted), n_categories=self.n_categories)
        return float(accuracy_score(y.numpy(), predicted, sample_weight=sample_weight))

    def transform(self, images: object) -> list[torch.Tensor]:
        """Per-block feature maps of the classification pass.

        Parameters
        ----------
        images : array-like or torch.Tensor of shape (n_images, 3, 224, 224)

        Returns
        -------
        list of torch.Tensor
            ``n_blocks`` tensors of shape (n_images, C_i, H_i, W_i), the
            output of each block after its ReLU and before pooling (TCNN-6:
            16x224x224, 32x112x112, 64x56x56, 128x28x28, 256x14x14,
            128x7x7), on ``device_``.
        """
        return self._maps_and_logits(images)[0]

    def fit_transform(
        self, images: object, categories: object, groups: object = None
    ) -> list[torch.Tensor]:
        """Train on ``images``, then return their block maps (:meth:`fit`, then :meth:`transform`).

        Unlike most scikit-learn transformers the encoder needs its targets:
        ``categories`` is required, as in :meth:`fit`.

        Parameters
        ----------
        images : array-like or torch.Tensor of shape (n_images, 3, 224, 224)
            Normalised RGB images.
        categories : array-like of shape (n_images,)
            Integer category ids in ``[0, n_categories)``.
        groups : array-like of shape (n_images,), optional
            Group labels for the early-stopping split (see :meth:`fit`).

        Returns
        -------
        list of torch.Tensor
            What :meth:`transform` returns for ``images``: ``n_blocks`` maps of
            shape (n_images, C_i, H_i, W_i), on ``device_``.
        """
        return self.fit(images, categories, groups=groups).transform(images)

    def transform_predict(self, images: object) -> tuple[list[torch.Tensor], np.ndarray]:
        """:meth:`transform` and :meth:`predict` from one forward pass.

        The block maps and the class scores come out of the same pass, so
        generating music needs the network once per image, not twice.

        Parameters
        ----------
        images : array-like or torch.Tensor of shape (n_images, 3, 224, 224)

        Returns
        -------
        maps : list of torch.Tensor
            As :meth:`transform` returns them.
        categories : ndarray of int64, shape (n_images,)
            As :meth:`predict` returns them.
        """
        maps, logits = self._maps_and_logits(images)
        return maps, self.classes_[logits.float().argmax(dim=1).cpu().numpy()]

    def _maps_and_logits(self, images: object) -> tuple[list[torch.Tensor], torch.Tensor]:
        self._check_initialized()
        x = check_images(images, size=IMAGE_SIZE)
        self.module_.eval()
        parts: list[list[torch.Tensor]] = []
        logits = []
        # no_grad rather than inference_mode: the maps are returned to the caller and
        # must stay usable in ordinary autograd code.
        with torch.no_grad():
            for begin in range(0, len(x), self.batch_size):
                xb = _to_device(x[begin : begin + self.batch_size], self.device_)
                scores, maps = self.module_.forward_features(xb)
                logits.append(scores)
                parts.append(maps)
        return [torch.cat(maps) for maps in zip(*parts, strict=True)], torch.cat(logits)


#: The paper's name for the encoder.
TCNN = TCNNEncoder
