"""A mosaic generator: new arrangements of the training pieces' own latent windows.

On two CPU cores neither the paper's adversarial generator nor this library's
IMLE and flow generators learn the codec's Deep latents well enough to decode
to clean piano: their clips carry a broadband hiss floor where real clips show
note lines over silence (docs/training.md, "clean music" in docs/evaluation.md).
At hop 8 the latents carry waveform detail, and a frame that is slightly off
decodes to noise. What decodes to clean piano is a window of real latents.

:class:`MosaicGenerator` therefore learns no network. It keeps the training
pieces' latents (as indices into a table of the distinct latent vectors, which
the codec's snapping makes at most its codebook's size) and writes a new
sequence for each photo by concatenative synthesis, the unit selection of
concatenative speech synthesis (Hunt and Black 1996) applied to latent windows:
the sequence is cut into ``n_units`` windows; the first window is drawn from the
pieces of the photo's category, weighted by how close their photos' features lie
to this photo's and by how typical the window is of the scene (a window
classifier); each later window either continues the current piece or jumps
to another window of the category, weighted also by how smoothly it joins the
window before it. It is a difference from the paper, whose generator is a
network trained adversarially.
"""

from __future__ import annotations

import hashlib
import time
from typing import Self

import numpy as np
import torch
from torch import nn

from conchshell._validation import check_positive_int, check_tensor
from conchshell.gan.generator import _LatentGenerator

__all__ = ["MosaicGenerator"]


class MosaicState(nn.Module):
    """What a fitted :class:`MosaicGenerator` keeps, as buffers (saved like weights).

    Parameters
    ----------
    n_sources : int
        Distinct training pieces.
    n_frames : int
        Latent frames per piece.
    n_vectors : int
        Distinct latent vectors over all pieces.
    emb_width : int
        Width of a latent vector.
    in_features : int
        Width of a video feature.
    n_categories : int
        Categories of the window classifier.
    """

    def __init__(
        self,
        n_sources: int,
        n_frames: int,
        n_vectors: int,
        emb_width: int,
        in_features: int,
        n_categories: int,
    ) -> None:
        super().__init__()
        self.register_buffer("table", torch.zeros(n_vectors, emb_width))
        self.register_buffer("index", torch.zeros(n_sources, n_frames, dtype=torch.int32))
        self.register_buffer("categories", torch.zeros(n_sources, dtype=torch.int64))
        self.register_buffer("photos", torch.zeros(n_sources, in_features))
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_scale", torch.ones(in_features))
        # The window classifier: standardised window statistics -> category logits.
        self.register_buffer("window_mean", torch.zeros(2 * emb_width))
        self.register_buffer("window_scale", torch.ones(2 * emb_width))
        self.register_buffer("window_coef", torch.zeros(n_categories, 2 * emb_width))
        self.register_buffer("window_intercept", torch.zeros(n_categories))

    def latents(self, source: int, start: int, length: int) -> torch.Tensor:
        """The latent window ``[start, start + length)`` of one piece, shape (emb_width, length).

        Parameters
        ----------
        source : int
        start, length : int

        Returns
        -------
        torch.Tensor
        """
        rows = self.index[source, start : start + length].long()
        return self.table.float()[rows].T

    def segment_stats(self, starts: torch.Tensor, length: int) -> torch.Tensor:
        """Per-channel mean and spread of ``length`` frames from each start, in every piece.

        Parameters
        ----------
        starts : torch.Tensor of int, shape (n_starts,)
            First frames; each segment must end within the sequence.
        length : int

        Returns
        -------
        torch.Tensor of float64, shape (n_sources * n_starts, 2 emb_width)
            Row ``s * n_starts + k`` is the segment from ``starts[k]`` of piece ``s``.
        """
        index, table = self.index.long().cpu(), self.table.float().cpu()
        out = []
        for first in starts.tolist():  # one offset at a time: a few tens of MB each
            v = table[index[:, first : first + length]]
            out.append(torch.cat([v.mean(1), v.std(1, unbiased=False)], dim=1).double())
        return torch.stack(out, 1).reshape(index.shape[0] * len(out), -1)

    def window_stats(self, n_units: int) -> torch.Tensor:
        """Per-channel mean and spread of every piece's windows, ``(n_sources * n_units, 2 w)``.

        Window ``u`` of a piece is frames ``[u L, (u + 1) L)``, ``L = n_frames // n_units``.

        Parameters
        ----------
        n_units : int

        Returns
        -------
        torch.Tensor of float64
            Row ``s * n_units + u`` is window ``u`` of piece ``s``.
        """
        length = self.index.shape[1] // n_units
        return self.segment_stats(torch.arange(n_units) * length, length)

    def window_log_proba(self, n_units: int) -> torch.Tensor:
        """The window classifier's log-probabilities, ``(n_sources * n_units, n_categories)``.

        Parameters
        ----------
        n_units : int

        Returns
        -------
        torch.Tensor of float64
        """
        z = (self.window_stats(n_units) - self.window_mean.double().cpu()) / (
            self.window_scale.double().cpu()
        )
        logits = z @ self.window_coef.double().cpu().T + self.window_intercept.double().cpu()
        return torch.log_softmax(logits, dim=1)


class MosaicGenerator(_LatentGenerator):
    """Concatenative generator of one level's latents from the training pieces' windows.

    A drop-in for :class:`~conchshell.gan.generator.Generator` in
    :class:`~conchshell.ImageToMusic` (same :meth:`fit`, :meth:`transform` and
    :meth:`sample_noise`) that learns no weights: :meth:`fit` keeps the
    distinct training pieces' latents, their categories and their photos'
    features; :meth:`transform` writes, for each photo, a sequence of
    ``n_units`` windows taken from the pieces of its category.

    The sequence's windows are chosen one after another:

    * each piece ``s`` of the category gets a photo weight
      ``softmax(cos(x, x_s) / photo_temperature)``, ``x`` being the photo's
      standardised feature and ``x_s`` the mean of its own photos' (so
      different photos of a category get different music, and similar ones
      similar music);
    * each window gets a scene weight ``p(category | window) ** guidance``
      from a window classifier (a logistic regression on the window's
      per-channel latent mean and spread, fitted on the training pieces'
      windows), as classifier guidance does for diffusion models (Dhariwal
      and Nichol 2021): windows typical of the scene are preferred;
    * the first window is drawn by photo weight times scene weight;
    * each later window continues the current piece with probability
      ``continue_prob``, unless it has already run ``max_run`` windows or
      ends; otherwise it jumps to another window (not the next one of the
      same piece) drawn by photo weight times scene weight times
      ``exp(-join / join_temperature)``, where ``join`` is the distance
      between the per-channel mean and spread of the last ``n_frames //
      (8 n_units)`` frames before the cut and of the first as many frames of
      the candidate (divided by its median over candidates), so a jump lands
      where the texture and loudness carry on.

    Windows are ``n_frames // n_units`` frames long, the last one taking the
    remainder, and a window can be taken from any offset of its piece.
    ``max_run`` bounds how much of one piece appears in a row, so a clip
    rearranges pieces instead of repeating one.

    Parameters
    ----------
    level : {"deep", "low", "high"}, {0, 1, 2} or None, default="deep"
        Level of the latents (``None``: the enclosing estimator's).
    in_features, n_categories, emb_width, n_frames : int or None, default=None
        Sizes; ``None`` takes what the data or the estimator implies.
    n_units : int, default=8
        Windows per sequence (1 s each for an 8-s clip).
    continue_prob : float, default=0.8
        Probability of continuing the current piece at a window boundary.
    max_run : int, default=3
        Most windows taken from one piece in a row.
    photo_temperature : float, default=0.1
        Sharpness of the photo weights (smaller: the nearest photos' pieces).
    join_temperature : float, default=0.5
        Sharpness of the preference for smooth joins (larger: any window).
    guidance : float, default=2.0
        Weight ``g`` of the window classifier: every window's weight is
        multiplied by ``p(category | window) ** g``, so windows typical of the
        scene are preferred (0: no preference).
    verbose : int, default=0
        Unused; kept for the estimator's interface.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the kept latents live.
    random_state : int, RandomState or None, default=None
        Seeds the default noise of :meth:`transform`.

    Attributes
    ----------
    module_ : MosaicState
        The kept latents (``table``, ``index``), the pieces' categories
        and photo features, the feature scaling and the window classifier.
    level_, n_frames_, in_features_, n_categories_, emb_width_ : int
        The sizes in use.
    n_sources_ : int
        Distinct training pieces kept.
    n_vectors_ : int
        Distinct latent vectors kept.
    device_ : torch.device
    history_ : list of dict
        One record: ``n_sources``, ``n_vectors``, ``window_accuracy`` (the
        window classifier's on its training windows; ``None`` with one
        category) and ``seconds``.

    Examples
    --------
    >>> import torch
    >>> latents = torch.randn(4, 3, 16).round()
    >>> g = MosaicGenerator("high", n_units=4, device="cpu", random_state=0)
    >>> g = g.fit(torch.randn(4, 5), latents, [0, 0, 1, 1])
    >>> g.transform(torch.randn(2, 5), [0, 1]).shape
    torch.Size([2, 3, 16])
    """

    adversarial = False
    # Nothing to train step by step: the estimator fits it once, without warm_start_steps.
    needs_steps = False
    # The estimator gives it latents snapped to the codebook, so the table stays small.
    snapped_targets = True
    # Not a network: optimize() leaves it in float32, as it is.
    is_network = False
    _what = "mosaic generator"
    _fitted_settable = (
        "n_units",
        "continue_prob",
        "max_run",
        "photo_temperature",
        "join_temperature",
        "guidance",
        "verbose",
    )

    def __init__(
        self,
        level: str | int | None = "deep",
        in_features: int | None = None,
        n_categories: int | None = None,
        emb_width: int | None = None,
        n_frames: int | None = None,
        n_units: int = 8,
        continue_prob: float = 0.8,
        max_run: int = 3,
        photo_temperature: float = 0.1,
        join_temperature: float = 0.5,
        guidance: float = 2.0,
        verbose: int = 0,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.level = level
        self.in_features = in_features
        self.n_categories = n_categories
        self.emb_width = emb_width
        self.n_frames = n_frames
        self.n_units = n_units
        self.continue_prob = continue_prob
        self.max_run = max_run
        self.photo_temperature = photo_temperature
        self.join_temperature = join_temperature
        self.guidance = guidance
        self.verbose = verbose
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------ structure
    def initialize(
        self,
        *,
        in_features: int | None = None,
        n_categories: int | None = None,
        n_frames: int | None = None,
        emb_width: int | None = None,
        n_sources: int | None = None,
        n_vectors: int | None = None,
    ) -> Self:
        """Build empty state at the sizes given (loading a saved model fills it).

        Parameters
        ----------
        in_features, n_categories, n_frames, emb_width : int, optional
            As for :meth:`Generator.initialize <conchshell.gan.generator.Generator.initialize>`.
        n_sources, n_vectors : int, optional
            Pieces and distinct latent vectors to make room for (default 0:
            nothing to generate from until :meth:`fit`).

        Returns
        -------
        self
        """
        self.n_sources_ = int(n_sources or 0)
        self.n_vectors_ = int(n_vectors or 0)
        return super().initialize(
            in_features=in_features,
            n_categories=n_categories,
            n_frames=n_frames,
            emb_width=emb_width,
        )

    def _build_module(self) -> nn.Module:
        return MosaicState(
            self.n_sources_,
            self.n_frames_,
            self.n_vectors_,
            self.emb_width_,
            self.in_features_,
            self.n_categories_,
        )

    def _check_settings(self) -> None:
        check_positive_int(self.n_units, "n_units")
        check_positive_int(self.max_run, "max_run")
        p = self.continue_prob
        if isinstance(p, bool) or not (isinstance(p, int | float) and 0 <= p <= 1):
            raise ValueError(f"continue_prob must be in [0, 1], got {p!r}")
        g = self.guidance
        if isinstance(g, bool) or not (isinstance(g, int | float) and np.isfinite(g) and g >= 0):
            raise ValueError(f"guidance must be a finite number >= 0, got {g!r}")
        for name in ("photo_temperature", "join_temperature"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not np.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        n_frames = getattr(self, "n_frames_", self.n_frames)
        if n_frames is not None and self.n_units > n_frames:
            raise ValueError(
                f"n_units={self.n_units} is more than the {n_frames} latent frames "
                "of a sequence; a window needs at least one frame"
            )

    # ------------------------------------------------------------- training
    def fit(self, features: object, latents: object, categories: object) -> MosaicGenerator:
        """Keep the distinct pieces' latents, categories and photo features.

        Parameters
        ----------
        features : array-like of shape (n_samples, in_features)
            Video features of the training photos.
        latents : array-like of shape (n_samples, emb_width, n_frames)
            Their pieces' latents; a piece paired with several photos may
            appear once per photo (it is kept once per category it is filed
            under). Snapped to the codec's
            codebook (as :class:`~conchshell.ImageToMusic` passes them), the
            distinct vectors are at most the codebook's size.
        categories : array-like of shape (n_samples,)
            Integer category ids in ``[0, n_categories)``.

        Returns
        -------
        self
        """
        started = time.perf_counter()
        self._check_settings()
        x, c, y = self._fit_inputs(features, latents, categories)
        self._check_settings()  # again, now that the sequence length is known
        y = y.detach().float().cpu()
        x = x.detach().float().cpu()
        # One source per distinct piece; its photo feature is the mean of its photos'.
        mean = x.mean(0)
        scale = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(mean)
        scale = torch.where(scale > 1e-6, scale, torch.ones_like(scale))
        z = (x - mean) / scale
        # Keyed by category too: pieces whose latents coincide (silence, or an untrained
        # codec's few codes) stay apart when they are filed under different scenes.
        first: dict[tuple[int, bytes], int] = {}
        owner = np.empty(x.shape[0], dtype=np.int64)
        for i in range(y.shape[0]):
            key = (int(c[i]), hashlib.sha1(y[i].numpy().tobytes()).digest())
            owner[i] = first.setdefault(key, len(first))
        sources = np.array(sorted(first.values()))
        rows = np.array([np.flatnonzero(owner == s)[0] for s in sources])
        cats = c.cpu()[rows]
        photos = torch.stack([z[torch.as_tensor(owner == s)].mean(0) for s in sources])
        photos = photos / photos.norm(dim=1, keepdim=True).clamp_min(1e-12)
        frames = y[torch.as_tensor(rows)].permute(0, 2, 1).reshape(-1, y.shape[1])
        table, inverse = torch.unique(frames, dim=0, return_inverse=True)
        self.n_sources_, self.n_vectors_ = len(sources), table.shape[0]
        state = self._build_module()
        with torch.no_grad():
            state.table.copy_(table)
            state.index.copy_(inverse.reshape(len(sources), self.n_frames_).to(torch.int32))
            state.categories.copy_(cats)
            state.photos.copy_(photos)
            state.feature_mean.copy_(mean)
            state.feature_scale.copy_(scale)
        accuracy = self._fit_window_classifier(state)
        self.module_ = state.to(self.device_).eval()
        self.history_ = [
            {
                "n_sources": self.n_sources_,
                "n_vectors": self.n_vectors_,
                "window_accuracy": accuracy,
                "seconds": round(time.perf_counter() - started, 3),
            }
        ]
        return self

    def _fit_window_classifier(self, state: MosaicState) -> float | None:
        """Fit the window classifier's buffers; its training accuracy (None: one category)."""
        from sklearn.linear_model import LogisticRegression

        n_units = int(self.n_units)
        stats = state.window_stats(n_units).numpy()
        labels = np.repeat(state.categories.numpy(), n_units)
        mean = stats.mean(0)
        scale = stats.std(0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        z = (stats - mean) / scale
        with torch.no_grad():
            state.window_mean.copy_(torch.as_tensor(mean))
            state.window_scale.copy_(torch.as_tensor(scale))
            if np.unique(labels).size < 2:  # nothing to tell apart: no preference
                return None
            clf = LogisticRegression(max_iter=2000).fit(z, labels)
            coef, icpt = clf.coef_, clf.intercept_
            if coef.shape[0] == 1:  # two classes: sklearn gives the second's logit against 0
                coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, icpt]
            # Categories no piece has get no window: a very low logit.
            state.window_intercept.fill_(-30.0)
            rows = torch.as_tensor(clf.classes_)
            state.window_coef[rows] = torch.as_tensor(coef, dtype=torch.float32)
            state.window_intercept[rows] = torch.as_tensor(icpt, dtype=torch.float32)
        return round(float(clf.score(z, labels)), 4)

    # ----------------------------------------------------------- generation
    def sample_noise(self, n_samples: int, seed: int | None = None) -> torch.Tensor:
        """The uniform draws behind :meth:`transform`'s choices: ``(n, 2, n_units)``.

        Row ``[i, 0]`` decides at each window whether to continue the current
        piece, row ``[i, 1]`` which window to take when it does not.

        Parameters
        ----------
        n_samples : int
            Rows to draw.
        seed : int, optional
            Seed of the draw; default ``random_state``'s. Row ``i`` is the same
            for every ``n_samples > i``.

        Returns
        -------
        torch.Tensor
            Uniform in ``[0, 1)``, float64.
        """
        self._check_initialized()
        check_positive_int(self.n_units, "n_units")
        seed = int(self.seed_) if seed is None else int(seed)
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(n_samples, 2, int(self.n_units), generator=gen, dtype=torch.float64)

    def transform(self, features: object, categories: object, noise: object = None) -> torch.Tensor:
        """Write one latent sequence per photo from the kept pieces' windows.

        Parameters
        ----------
        features : array-like of shape (n_samples, in_features)
        categories : array-like of shape (n_samples,)
        noise : array-like of shape (n_samples, 2, n_units), optional
            Uniform draws in ``[0, 1)``; default :meth:`sample_noise` (the
            same inputs give the same latents from call to call).

        Returns
        -------
        torch.Tensor of shape (n_samples, emb_width, n_frames_)
            On the CPU, float32.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before :meth:`fit` (or with no piece kept).
        """
        from sklearn.exceptions import NotFittedError

        self._check_initialized()
        self._check_settings()
        if self.n_sources_ == 0:
            raise NotFittedError(f"this {type(self).__name__} keeps no pieces: call fit first")
        x, c = self._check_inputs(features, categories)
        u = self.sample_noise(x.shape[0]) if noise is None else noise
        u = check_tensor(u, name="noise", ndim=3, shape=(x.shape[0], 2, int(self.n_units)))
        if bool(((u < 0) | (u >= 1)).any()):
            raise ValueError("noise must lie in [0, 1)")
        state = self.module_
        z = (x.float().to(state.photos.device) - state.feature_mean) / state.feature_scale
        z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        similarity = (z @ state.photos.float().T).cpu().double().numpy()
        units = self._units(state)
        out = torch.empty(x.shape[0], self.emb_width_, self.n_frames_)
        for i in range(x.shape[0]):
            plan = self._plan(units, similarity[i], int(c[i]), u[i].double().numpy())
            out[i] = torch.cat([state.latents(s, start, n).cpu() for s, start, n in plan], dim=1)
        return out

    def _units(self, state: MosaicState) -> _Units:
        """The windows' statistics (about a second to compute), kept until the state changes."""
        # A tensor's _version counts its in-place changes, so a reload into the same module
        # (load_state_dict copies in place) is noticed too.
        key = (id(state), int(self.n_units), *(b._version for b in state.buffers()))
        cached = getattr(self, "_units_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, _Units(state, int(self.n_units)))
            self._units_cache = cached
        return cached[1]

    def _plan(
        self, units: _Units, similarity: np.ndarray, category: int, draws: np.ndarray
    ) -> list[tuple[int, int, int]]:
        """The ``(piece, start frame, length)`` of each window of one sequence."""
        pieces = np.flatnonzero(units.categories == category)
        if pieces.size == 0:  # a category the training pieces lack: any piece will do
            pieces = np.arange(units.n_sources)
        logits = similarity[pieces] / float(self.photo_temperature)
        weight = np.exp(logits - logits.max())
        photo = np.zeros(units.n_sources)
        photo[pieces] = weight / weight.sum()
        n_units, length = units.n_units, units.length
        sizes = [length] * (n_units - 1) + [units.n_frames - length * (n_units - 1)]
        # Candidates are (piece, window) pairs, window w starting at frame w * length.
        prior = np.repeat(photo, n_units) / n_units
        if self.guidance:
            typical = units.log_proba[:, category] * float(self.guidance)
            prior = prior * np.exp(typical - typical[prior > 0].max())
            prior = prior / prior.sum()
        pick = _inverse_cdf(prior, draws[1, 0])
        piece, window = divmod(pick, n_units)
        run = 1
        plan = [(piece, window * length, sizes[0])]
        for j in range(1, n_units):
            can_continue = run < int(self.max_run) and window + 1 < n_units
            if can_continue and draws[0, j] < self.continue_prob:
                window, run = window + 1, run + 1
            else:
                join = units.join_cost(piece, window)
                p = prior * np.exp(-join / float(self.join_temperature))
                if p.sum() <= 0:  # every join underflowed: fall back on the photo weights
                    p = prior.copy()
                if window + 1 < n_units:
                    # A jump is not a continuation, so max_run bounds every run.
                    p[piece * n_units + window + 1] = 0.0
                piece, window = divmod(_inverse_cdf(p, draws[1, j]), n_units)
                run = 1
            plan.append((int(piece), int(window) * length, sizes[j]))
        return plan


class _Units:
    """The windows of the kept pieces and their edge statistics, for the join cost."""

    def __init__(self, state: MosaicState, n_units: int) -> None:
        self.n_sources, self.n_frames = state.index.shape
        self.n_units = n_units
        self.length = self.n_frames // n_units
        self.categories = state.categories.cpu().numpy()
        self.log_proba = state.window_log_proba(n_units).numpy()
        edge = max(1, self.length // 8)
        starts = torch.arange(n_units) * self.length
        # A window's head is its first `edge` frames; its tail its last (as a middle window,
        # `length` long).
        self.heads = state.segment_stats(starts, edge).numpy()
        self.tails = state.segment_stats(starts + self.length - edge, edge).numpy()

    def join_cost(self, piece: int, window: int) -> np.ndarray:
        """Distance from window ``window`` of ``piece``'s tail to every window's head."""
        d = np.linalg.norm(self.heads - self.tails[piece * self.n_units + window], axis=1)
        scale = np.median(d)
        return d / scale if scale > 0 else np.zeros_like(d)


def _inverse_cdf(p: np.ndarray, u: float) -> int:
    """The index a uniform draw ``u`` picks from unnormalised probabilities ``p``."""
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), len(p) - 1))
