"""Image reading and the one normalisation used in training and inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from conchshell.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    denormalize,
    image_to_array,
    load_image,
    normalize,
    open_image,
    to_image_batch,
)


def colour_of(x: torch.Tensor) -> np.ndarray:
    """Mean [0, 1] RGB of a normalised image."""
    return denormalize(x).mean(dim=(-2, -1)).numpy()


def test_constants_and_normalisation_round_trip():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)
    x = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(denormalize(normalize(x)), x)
    grey = load_image(np.full((4, 4, 3), 0.5, dtype=np.float32))
    expected = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(grey[:, 0, 0], expected)


@pytest.mark.parametrize(
    ("make", "rgb"),
    [
        (lambda: Image.new("L", (30, 20), 128), (128, 128, 128)),
        (lambda: Image.new("1", (30, 20), 1), (255, 255, 255)),
        (lambda: Image.new("RGB", (30, 20), (10, 200, 30)), (10, 200, 30)),
        (lambda: Image.new("RGB", (30, 20), (10, 200, 30)).convert("P"), (10, 200, 30)),
        (lambda: Image.new("CMYK", (30, 20), (0, 255, 255, 0)), (255, 0, 0)),
        (lambda: Image.new("YCbCr", (30, 20), (128, 128, 128)), (128, 128, 128)),
        # 16-bit and 32-bit integer grayscale: full scale is 65535
        (lambda: Image.fromarray(np.full((20, 30), 65535, np.uint16)), (255, 255, 255)),
        (lambda: Image.fromarray(np.full((20, 30), 32768, np.int32)), (127.5, 127.5, 127.5)),
        (lambda: Image.fromarray(np.full((20, 30), 0.25, np.float32)), (63.75, 63.75, 63.75)),
        # transparency is composited over white
        (lambda: Image.new("RGBA", (30, 20), (0, 0, 0, 0)), (255, 255, 255)),
        (lambda: Image.new("RGBA", (30, 20), (0, 0, 0, 255)), (0, 0, 0)),
        (lambda: Image.new("LA", (30, 20), (0, 128)), (127, 127, 127)),
    ],
    ids=["L", "1", "RGB", "P", "CMYK", "YCbCr", "I;16", "I", "F", "RGBA-clear", "RGBA", "LA"],
)
def test_pillow_modes_become_rgb(make, rgb):
    img = make()
    x = load_image(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    np.testing.assert_allclose(colour_of(x), np.array(rgb) / 255, atol=2 / 255)


def test_sixteen_bit_png_file_keeps_its_range(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "I;16"
    x = denormalize(load_image(tmp_path / "g.png"))
    # Pillow's own convert("RGB") would clip everything above 255 to white.
    assert float(x[0, :, 0].mean()) < 0.02
    assert float(x[0, :, -1].mean()) > 0.98
    assert 0.4 < float(x[0, :, 112].mean()) < 0.6


def test_palette_with_transparent_index(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    np.testing.assert_allclose(colour_of(load_image(img)), [1, 1, 1], atol=1e-6)


def test_path_pil_and_array_give_identical_tensors(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    a = load_image(tmp_path / "x.png")
    b = load_image(str(tmp_path / "x.png"))
    c = load_image(Image.fromarray(arr))
    d = load_image(arr)
    e = load_image(arr.astype(np.float64) / 255)
    for other in (b, c, d):
        torch.testing.assert_close(a, other, rtol=0, atol=0)
    torch.testing.assert_close(a, e, rtol=0, atol=1e-5)


def test_jpeg_and_exif_orientation(tmp_path):
    # Left half red, right half blue, stored with EXIF orientation 6 (rotate 90 clockwise on
    # display): shown upright, red is on top.
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30] = (255, 0, 0)
    arr[:, 30:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    x = denormalize(load_image(tmp_path / "r.jpg"))
    top, bottom = x[:, :100].mean(dim=(1, 2)), x[:, 124:].mean(dim=(1, 2))
    assert top[0] > 0.9 and top[2] < 0.1
    assert bottom[2] > 0.9 and bottom[0] < 0.1


def test_large_jpeg_is_reduced_and_resized(tmp_path):
    Image.new("RGB", (1600, 1200), (30, 60, 90)).save(tmp_path / "big.jpg", quality=95)
    x = load_image(tmp_path / "big.jpg")
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(colour_of(x), np.array([30, 60, 90]) / 255, atol=2 / 255)


def test_numpy_layouts():
    gray = np.full((10, 12), 51, np.uint8)
    np.testing.assert_allclose(colour_of(load_image(gray)), [0.2] * 3, atol=1e-6)
    one = np.full((10, 12, 1), 51, np.uint8)
    torch.testing.assert_close(load_image(one), load_image(gray))
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 3] = 0
    np.testing.assert_allclose(colour_of(load_image(rgba)), [1, 1, 1], atol=1e-6)
    sixteen = np.full((10, 12, 3), 65535, np.uint16)
    np.testing.assert_allclose(colour_of(load_image(sixteen)), [1, 1, 1], atol=1e-6)
    ints = np.full((10, 12, 3), 255, np.int64)
    np.testing.assert_allclose(colour_of(load_image(ints)), [1, 1, 1], atol=1e-6)
    assert image_to_array(gray).shape == (10, 12, 3)


@pytest.mark.parametrize(
    ("arr", "exc", "match"),
    [
        (np.full((4, 4, 3), 2.0, np.float32), ValueError, r"\[0, 1\]"),
        (np.full((4, 4, 3), np.nan, np.float32), ValueError, "NaN"),
        (np.zeros((3, 32, 32), np.uint8), ValueError, "channels first"),
        (np.zeros((4, 4, 5), np.uint8), ValueError, "C in 1, 3, 4"),
        (np.zeros((0, 4, 3), np.uint8), ValueError, "empty"),
        (np.zeros((4,), np.uint8), ValueError, r"\(H, W\)"),
        (np.full((4, 4), 300, np.int32), ValueError, "0..255"),
        (np.zeros((4, 4), bool), TypeError, "bool"),
    ],
)
def test_bad_arrays(arr, exc, match):
    with pytest.raises(exc, match=match):
        load_image(arr)


def test_to_image_batch_inputs(tmp_path):
    Image.new("RGB", (20, 20), (255, 0, 0)).save(tmp_path / "r.png")
    mixed = to_image_batch([tmp_path / "r.png", Image.new("L", (5, 5), 0), np.ones((3, 3, 3))])
    assert mixed.shape == (3, 3, 224, 224)
    np.testing.assert_allclose(colour_of(mixed), [[1, 0, 0], [0, 0, 0], [1, 1, 1]], atol=1e-6)
    batch = np.zeros((2, 8, 9, 3), np.uint8)
    assert to_image_batch(batch).shape == (2, 3, 224, 224)
    assert to_image_batch(str(tmp_path / "r.png")).shape == (1, 3, 224, 224)
    assert to_image_batch(np.zeros((8, 9), np.uint8)).shape == (1, 3, 224, 224)


def test_tensors_are_taken_as_preprocessed():
    t = torch.randn(2, 3, 224, 224) * 5  # not a range a normalised image has: still untouched
    out = to_image_batch(t)
    torch.testing.assert_close(out, t, rtol=0, atol=0)
    assert to_image_batch(t[0]).shape == (1, 3, 224, 224)
    torch.testing.assert_close(load_image(t[1]), t[1], rtol=0, atol=0)
    assert to_image_batch(t.double()).dtype == torch.float32
    with pytest.raises(TypeError, match="preprocessed"):
        to_image_batch(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"3, 224, 224\), got \(1, 3, 100, 100\)"):
        to_image_batch(torch.zeros(1, 3, 100, 100))
    with pytest.raises(ValueError, match="NaN"):
        to_image_batch(torch.full((1, 3, 224, 224), float("nan")))
    with pytest.raises(ValueError, match="empty"):
        to_image_batch([])
    with pytest.raises(TypeError, match="image must be"):
        to_image_batch([3.0])
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        denormalize(torch.zeros(4, 5, 5))


@settings(max_examples=15, deadline=None)
@given(
    arrays(
        np.uint8,
        st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])),
    )
)
def test_any_uint8_image_gives_a_valid_tensor(arr):
    x = load_image(arr)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    d = denormalize(x)
    assert torch.isfinite(x).all()
    assert float(d.min()) >= 0 and float(d.max()) <= 1
    # resizing never leaves the input's range (antialiased bilinear is a convex combination)
    rgb = image_to_array(arr)
    assert float(d.min()) >= rgb.min() - 1e-5 and float(d.max()) <= rgb.max() + 1e-5


# -- large images: reduced before the float work; everything else pixel for pixel as before --
def _direct(img: Image.Image) -> torch.Tensor:
    """The direct pipeline spelled out: RGB, /255, antialiased bilinear to 224, normalise."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    chw = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    out = torch.nn.functional.interpolate(
        chw[None], size=(224, 224), mode="bilinear", antialias=True, align_corners=False
    )[0]
    return normalize(out.clamp_(0.0, 1.0))


@pytest.fixture
def reduce_calls(monkeypatch):
    """Record (source size, factor) of every Image.reduce call."""
    calls = []
    real = Image.Image.reduce

    def spy(self, factor, box=None):
        calls.append((self.size, factor))
        return real(self, factor, box)

    monkeypatch.setattr(Image.Image, "reduce", spy)
    return calls


def _photo(w: int, h: int, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, 0.5 + 0.4 * np.sin(x / 9.0) * np.cos(y / 13.0)], axis=-1)
    return (np.clip(base + rng.normal(0, noise, (h, w, 3)), 0, 1) * 255).astype(np.uint8)


def test_ordinary_photos_give_the_tensors_of_the_direct_pipeline(tmp_path, reduce_calls):
    arr = _photo(1920, 1080)
    Image.fromarray(arr).save(tmp_path / "photo.png", compress_level=1)
    Image.fromarray(arr).save(tmp_path / "photo.jpg", quality=92)
    png = load_image(tmp_path / "photo.png")
    torch.testing.assert_close(png, _direct(Image.fromarray(arr)), rtol=0, atol=0)
    torch.testing.assert_close(load_image(Image.fromarray(arr)), png, rtol=0, atol=0)
    with Image.open(tmp_path / "photo.jpg") as jpeg:
        jpeg.draft("RGB", (224, 224))  # decoded at 1/4 scale, as before
        expected = _direct(jpeg)
    torch.testing.assert_close(load_image(tmp_path / "photo.jpg"), expected, rtol=0, atol=0)
    assert reduce_calls == []


def test_the_reduce_starts_just_above_the_size_limit(tmp_path, monkeypatch, reduce_calls):
    import conchshell.data.images as images

    monkeypatch.setattr(images, "_LARGE_IMAGE_PIXELS", 1000 * 1000)
    at_limit = Image.fromarray(_photo(1000, 1000))
    torch.testing.assert_close(load_image(at_limit), _direct(at_limit), rtol=0, atol=0)
    assert reduce_calls == []
    above = Image.fromarray(_photo(1001, 1000, noise=0.0))
    x = load_image(above)
    assert [factor for _, factor in reduce_calls] == [(2, 2)]  # 501 x 500: both >= 448
    # Box average then resize: close to the direct path, not equal.
    d = (denormalize(x) - denormalize(_direct(above))).abs()
    assert float(d.mean()) < 1 / 255 and float(d.max()) < 0.05


def test_a_huge_png_is_reduced_in_strips_before_the_float_work(tmp_path, reduce_calls):
    # 5000 x 4000 (20 Mpx, above 4096 x 4096): left half black, right half white.
    arr = np.zeros((4000, 5000), np.uint8)
    arr[:, 2500:] = 255
    Image.fromarray(arr).save(tmp_path / "huge.png")
    x = denormalize(load_image(tmp_path / "huge.png"))
    assert x.shape == (3, 224, 224)
    assert {factor for _, factor in reduce_calls} == {(11, 8)}  # to 455 x 500
    assert sum(size[1] for size, _ in reduce_calls) == 4000  # strips cover the image once
    assert max(size[0] * size[1] for size, _ in reduce_calls) <= 4_000_000
    assert float(x[:, :, :100].max()) < 1e-6 and float(x[:, :, 124:].min()) > 1 - 1e-6


@pytest.mark.parametrize(
    ("make", "mode"),
    [
        (lambda a: Image.fromarray(a).convert("RGBA"), "RGBA"),
        (lambda a: Image.fromarray(a).convert("P"), "RGB"),
        (lambda a: Image.fromarray(a).convert("1"), "L"),
        (lambda a: Image.fromarray(a).convert("CMYK"), "RGB"),
        (lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257), "I"),
    ],
    ids=["RGBA", "P", "1", "CMYK", "I;16"],
)
def test_strips_give_what_one_reduce_of_the_whole_image_gives(monkeypatch, make, mode):
    import conchshell.data.images as images

    monkeypatch.setattr(images, "_LARGE_IMAGE_PIXELS", 100)
    monkeypatch.setattr(images, "_STRIP_PIXELS", 3000)  # a few rows a strip
    img = make(_photo(101, 77))
    if img.mode == "RGBA":
        img.putalpha(Image.fromarray(_photo(101, 77)[..., 1]))
    out = images._reduce_large(img, 10)
    whole = img.convert(mode).reduce((5, 3))
    assert out.mode == mode and out.size == whole.size == (21, 26)
    assert np.array_equal(np.asarray(out), np.asarray(whole))


def test_pillow_decompression_bomb_limit_is_kept(tmp_path, monkeypatch):
    # A 10000 x 10000 image (1e8 px) lies between Pillow's MAX_IMAGE_PIXELS (89.5 Mpx) and
    # twice that: it loads, with Pillow's warning; above twice the limit it is refused.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000 * 1000)
    Image.new("L", (1100, 1000), 128).save(tmp_path / "warned.png")
    Image.new("L", (2100, 1000), 128).save(tmp_path / "bomb.png")
    with pytest.warns(Image.DecompressionBombWarning):
        assert load_image(tmp_path / "warned.png").shape == (3, 224, 224)
    with pytest.raises(ValueError, match=r"bomb\.png.*decompression bomb"):
        load_image(tmp_path / "bomb.png")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: load_image(b"x.jpg"), r"image must be .* got bytes: b'x\.jpg' \(a path: decode"),
        (lambda: to_image_batch(b"x.jpg"), r"images must be .* got bytes: b'x\.jpg'"),
        (lambda: to_image_batch([b"x.jpg"]), r"got bytes: b'x\.jpg'"),
        (lambda: open_image(b"x.jpg"), r"path must be a str or a path, got bytes: b'x\.jpg'"),
    ],
)
def test_a_bytes_path_is_a_type_error_naming_the_value(call, match):
    with pytest.raises(TypeError, match=match):
        call()
