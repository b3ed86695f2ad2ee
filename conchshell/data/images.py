"""Reading and preprocessing images.

One preprocessing is used everywhere, in training and at inference alike
(the authors' code normalised images only in training): convert to RGB,
resize to 224x224, scale to [0, 1], then normalise each channel with the
ImageNet mean and standard deviation.

* Pillow modes: ``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr`` and the
  others Pillow converts to RGB directly; ``RGBA``, ``LA``, ``PA`` and
  palette images with a transparent colour are composited over white;
  16-bit ``I;16*`` images are divided by 65535, 32-bit ``I`` images (how
  some readers hold 16-bit grayscale) are clipped to [0, 65535] and divided
  by 65535, float ``F`` images must already lie in [0, 1].
* Files: EXIF orientation is applied; large JPEGs are decoded at a reduced
  scale that still covers 224x224 (Pillow's ``draft``), which is much faster
  and indistinguishable after the resize.
* Very large images: a file or Pillow image of more than 4096 x 4096 pixels
  (16.8 Mpx) is first shrunk by whole factors (Pillow's ``reduce``, a box
  average, done in strips) to no less than 448 pixels (twice the target) on
  each side, so a 10000 x 10000 PNG costs its decoded 8-bit pixels rather
  than gigabytes of float copies. Images up to that size, and all JPEGs that
  ``draft`` brings below it, take the direct path, pixel for pixel as before.
  Pillow's decompression-bomb limit stays in force: an image of more than
  ``PIL.Image.MAX_IMAGE_PIXELS`` (89.5 Mpx unless changed) loads with
  Pillow's ``DecompressionBombWarning``, and one of more than twice that is a
  ``ValueError`` naming the file.
* Resizing: to exactly 224x224 (the aspect ratio is not kept, as in the
  authors' pipeline), bilinear with antialiasing
  (:func:`torch.nn.functional.interpolate`, ``antialias=True``), which
  matches Pillow's bilinear filter and torchvision's default ``Resize``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from conchshell._validation import check_path, check_positive_int, check_tensor

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SIZE",
    "denormalize",
    "image_to_array",
    "load_image",
    "normalize",
    "open_image",
    "to_image_batch",
]

#: Side of the square images every component reads.
IMAGE_SIZE = 224
#: Per-channel mean of ImageNet (RGB, on the [0, 1] scale).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: Per-channel standard deviation of ImageNet (RGB, on the [0, 1] scale).
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageSource = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
# Images with more pixels than this are reduced before their pixels become floats
# (a float32 RGB copy costs 12 bytes a pixel, and the resize makes more).
_LARGE_IMAGE_PIXELS = 4096 * 4096
# Modes Pillow's reduce averages correctly as they are (LA and RGBA premultiplied).
_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F")
# Pixels of the source decoded, converted and reduced at a time.
_STRIP_PIXELS = 4_000_000


def _stats(ndim: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (3, 1, 1) if ndim == 3 else (1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=like.dtype, device=like.device).reshape(shape)
    std = torch.tensor(IMAGENET_STD, dtype=like.dtype, device=like.device).reshape(shape)
    return mean, std


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] RGB images to the normalised scale the models read.

    Parameters
    ----------
    images : torch.Tensor of shape (3, H, W) or (batch, 3, H, W)

    Returns
    -------
    torch.Tensor
        ``(images - IMAGENET_MEAN) / IMAGENET_STD`` per channel.
    """
    images = check_tensor(images, name="images", ndim=(3, 4), allow_empty=True)
    _check_channels(images)
    mean, std = _stats(images.ndim, images)
    return (images - mean) / std


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Undo :func:`normalize`, giving [0, 1] RGB images for display.

    Parameters
    ----------
    images : torch.Tensor of shape (3, H, W) or (batch, 3, H, W)

    Returns
    -------
    torch.Tensor
        Same shape, clipped to [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> x = load_image(np.full((8, 8, 3), 255, dtype=np.uint8))
    >>> float(denormalize(x).min())
    1.0
    """
    images = check_tensor(images, name="images", ndim=(3, 4), allow_empty=True)
    _check_channels(images)
    mean, std = _stats(images.ndim, images)
    return (images * std + mean).clamp(0.0, 1.0)


def _check_channels(images: torch.Tensor) -> None:
    axis = images.ndim - 3
    if images.shape[axis] != 3:
        raise ValueError(
            f"images must have 3 (RGB) channels on axis {axis}, got shape {tuple(images.shape)}"
        )


def open_image(path: str | os.PathLike, *, size: int = IMAGE_SIZE) -> Image.Image:
    """Open and fully decode an image file, with its EXIF orientation applied.

    Parameters
    ----------
    path : str or path-like
    size : int, default=224
        JPEGs larger than this are decoded at the smallest reduced scale that
        still covers ``size`` x ``size``; an image that is still larger than
        4096 x 4096 pixels is then reduced by whole factors to no less than
        ``2 * size`` pixels a side (see the module notes).

    Returns
    -------
    PIL.Image.Image

    Raises
    ------
    TypeError
        When ``path`` is not a str or path (bytes, say).
    FileNotFoundError
        When the file does not exist.
    ValueError
        When it is not an image Pillow can read, is truncated or corrupt, or
        is larger than twice Pillow's ``MAX_IMAGE_PIXELS``.
    """
    path = check_path(path, "path")
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"image path {str(path)!r} is not a file")
    try:
        with Image.open(path) as img:
            if img.format == "JPEG" and img.mode in ("RGB", "L"):
                img.draft(img.mode, (size, size))
            img.load()
            # Reduce before the EXIF transpose, which would copy the full image.
            out = ImageOps.exif_transpose(_reduce_large(img, size))
            out.load()
    except UnidentifiedImageError as exc:
        raise ValueError(
            f"cannot read image file {str(path)!r}: not an image Pillow knows"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ValueError(f"cannot read image file {str(path)!r}: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated and corrupt data as OSError/SyntaxError.
        hint = "" if "truncated" in str(exc) else " (truncated or corrupt?)"
        raise ValueError(f"cannot read image file {str(path)!r}: {exc}{hint}") from exc
    return out


def image_to_array(image: Image.Image | np.ndarray, *, name: str = "image") -> np.ndarray:
    """Convert a Pillow image or a numpy array to float32 RGB in [0, 1].

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        Arrays are ``(H, W)`` grayscale or ``(H, W, C)`` with C in 1, 3, 4
        (channels last, as Pillow and imageio give them). ``uint8`` is divided
        by 255, ``uint16`` by 65535; other integer arrays must hold 0..255;
        float arrays must lie in [0, 1]. Four channels are RGBA, composited
        over white.
    name : str, default="image"
        How the input is called in error messages.

    Returns
    -------
    numpy.ndarray of shape (H, W, 3), float32
    """
    if isinstance(image, Image.Image):
        return _pil_to_array(image, name)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a PIL image or numpy array, got {type(image).__name__}")
    arr = image
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4):
        hint = " (channels first? numpy images are (H, W, C))" if arr.shape[0] in (1, 3, 4) else ""
        raise ValueError(
            f"{name} must have shape (H, W) or (H, W, C) with C in 1, 3, 4; got {arr.shape}{hint}"
        )
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, C), got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{name}: integer images of dtype {arr.dtype} must hold 0..255, got {lo}..{hi}"
            )
        out = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name}: float images must lie in [0, 1], got [{lo:.4g}, {hi:.4g}] "
                "(for 0..255 values, pass a uint8 array)"
            )
    else:
        raise TypeError(f"{name} must be an integer or float array, got dtype {arr.dtype}")
    if out.ndim == 2:
        out = out[:, :, None]
    if out.shape[-1] == 4:
        rgb, alpha = out[..., :3], out[..., 3:]
        out = rgb * alpha + (1.0 - alpha)
    elif out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return np.ascontiguousarray(out, dtype=np.float32)


def _pil_to_array(img: Image.Image, name: str) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        gray = np.asarray(img, dtype=np.float32) / 65535.0
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=-1))
    if mode == "I":
        gray = np.clip(np.asarray(img, dtype=np.float64), 0, 65535) / 65535.0
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=-1), dtype=np.float32)
    if mode == "F":
        return image_to_array(np.asarray(img, dtype=np.float32), name=name)
    has_alpha = "A" in img.getbands() or (mode == "P" and "transparency" in img.info)
    try:
        if has_alpha:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, rgba).convert("RGB")
        else:
            rgb = img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ValueError(f"{name}: cannot convert Pillow mode {mode!r} to RGB ({exc})") from exc
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _reduce_large(img: Image.Image, size: int) -> Image.Image:
    """Shrink an image of more than 4096 x 4096 pixels by whole factors per axis.

    Each side keeps at least ``2 * size`` pixels, so the final antialiased
    resize still has twice the pixels it needs. The work goes in horizontal
    strips of a few megapixels, each cropped, brought to a mode whose pixels
    may be averaged (palette and bilevel images to RGB(A) or L, 16-bit to
    ``I``) and box-averaged with :meth:`PIL.Image.Image.reduce`; strips span
    whole boxes, so the result equals one ``reduce`` of the whole image.
    Smaller images are returned as they are.
    """
    w, h = img.size
    fx, fy = max(1, w // (2 * size)), max(1, h // (2 * size))
    if w * h <= _LARGE_IMAGE_PIXELS or (fx, fy) == (1, 1):
        return img
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        mode = "I"
    elif mode == "1":
        mode = "L"
    elif mode not in _REDUCIBLE:
        has_alpha = "A" in img.getbands() or (mode == "P" and "transparency" in img.info)
        mode = "RGBA" if has_alpha else "RGB"
    out = Image.new(mode, (-(-w // fx), -(-h // fy)))
    rows = fy * max(1, _STRIP_PIXELS // (w * fy))
    for top in range(0, h, rows):
        strip = img.crop((0, top, w, min(h, top + rows)))
        if strip.mode != mode:
            strip = strip.convert(mode)
        out.paste(strip.reduce((fx, fy)), (0, top // fy))
    return out


def _resize(chw: torch.Tensor, size: int) -> torch.Tensor:
    if chw.shape[-2:] == (size, size):
        return chw
    out = torch.nn.functional.interpolate(
        chw[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0]
    return out.clamp_(0.0, 1.0)


def _check_preprocessed(images: torch.Tensor, size: int, name: str) -> torch.Tensor:
    if not images.is_floating_point():
        raise TypeError(
            f"{name}: tensors are taken as already preprocessed float images, got dtype "
            f"{images.dtype}; pass numpy arrays or PIL images to have them converted"
        )
    return check_tensor(
        images,
        name=name,
        ndim=(3, 4),
        shape=(None, 3, size, size) if images.ndim == 4 else (3, size, size),
    )


def load_image(source: ImageSource, *, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Load one image as a normalised float tensor.

    Parameters
    ----------
    source : str, path-like, PIL.Image.Image, numpy.ndarray or torch.Tensor
        A file path, a Pillow image, or a numpy array (see
        :func:`image_to_array` for the accepted layouts and dtypes). A tensor
        is taken as already preprocessed: it must be float with shape
        ``(3, size, size)`` and is returned unchanged (as float32).
    size : int, default=224

    Returns
    -------
    torch.Tensor of shape (3, size, size), float32
        RGB, resized, scaled to [0, 1], then normalised with
        :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`.

    Raises
    ------
    FileNotFoundError
        When a path does not exist.
    ValueError
        When a file cannot be decoded (corrupt, truncated), or an array has
        a bad shape or range; the message names the file or input.

    Examples
    --------
    >>> import numpy as np
    >>> load_image(np.zeros((100, 150, 3), dtype=np.uint8)).shape
    torch.Size([3, 224, 224])
    """
    size = check_positive_int(size, "size")
    if isinstance(source, torch.Tensor):
        return _check_preprocessed(source, size, "image")
    if isinstance(source, str | os.PathLike):
        name = f"image file {str(source)!r}"
        with warnings.catch_warnings():
            # Pillow warns about odd metadata in ordinary photos; the pixels are fine.
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            img = open_image(source, size=size)
        arr = _pil_to_array(img, name)
    elif isinstance(source, Image.Image):
        arr = image_to_array(_reduce_large(source, size), name="image")
    elif isinstance(source, np.ndarray):
        arr = image_to_array(source, name="image")
    else:
        raise TypeError(
            "image must be a path, PIL image, numpy array or torch tensor, got "
            f"{type(source).__name__}{_bytes_hint(source)}"
        )
    chw = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    return normalize(_resize(chw, size))


def _bytes_hint(value: object) -> str:
    """For bytes given as an image: the value (cut short) and what to pass instead."""
    if not isinstance(value, bytes | bytearray | memoryview):
        return ""
    data = bytes(value[:48])
    shown = repr(data) + ("..." if len(value) > 48 else "")
    return (
        f": {shown} (a path: decode it with os.fsdecode; a file's contents: pass "
        "PIL.Image.open(io.BytesIO(data)))"
    )


def to_image_batch(
    images: ImageSource | Sequence[ImageSource], *, size: int = IMAGE_SIZE
) -> torch.Tensor:
    """Turn any collection of images into one normalised batch.

    Parameters
    ----------
    images : path, PIL image, array, tensor, or a sequence of them
        * a list or tuple of paths, PIL images, numpy arrays or
          ``(3, size, size)`` tensors (each as in :func:`load_image`);
        * a numpy batch ``(batch, H, W, C)`` (uint8, uint16 or float in [0, 1]);
        * a torch tensor ``(3, size, size)`` or ``(batch, 3, size, size)``,
          taken as **already preprocessed**: it is checked (float, shape,
          finite values) but not normalised again;
        * a single path, PIL image or ``(H, W[, C])`` array: a batch of one.
    size : int, default=224

    Returns
    -------
    torch.Tensor of shape (batch, 3, size, size), float32

    Examples
    --------
    >>> import numpy as np
    >>> to_image_batch(np.zeros((2, 32, 32, 3), dtype=np.uint8)).shape
    torch.Size([2, 3, 224, 224])
    """
    if isinstance(images, bytes | bytearray | memoryview):
        raise TypeError(
            "images must be paths, PIL images, arrays or a tensor, got "
            f"{type(images).__name__}{_bytes_hint(images)}"
        )
    if isinstance(images, torch.Tensor):
        batch = _check_preprocessed(images, size, "images")
        return batch[None] if batch.ndim == 3 else batch
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            if images.shape[0] == 0:
                raise ValueError(f"images is an empty batch (shape {images.shape})")
            return torch.stack([load_image(im, size=size) for im in images])
        return load_image(images, size=size)[None]
    if isinstance(images, str | os.PathLike | Image.Image):
        return load_image(images, size=size)[None]
    if isinstance(images, Sequence):
        if len(images) == 0:
            raise ValueError("images is empty: expected at least one image")
        return torch.stack([load_image(im, size=size) for im in images])
    raise TypeError(
        "images must be a sequence of paths/PIL images/arrays, a numpy batch or a tensor, got "
        f"{type(images).__name__}"
    )
