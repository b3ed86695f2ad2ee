"""The gallery in headless Chromium: every picture loads, and the docs' screenshot is taken.

Two stand-in clips are rendered from their scores, as ``conchshell data build`` plays them;
each is shown in the gallery's "generated" slot beside another clip of its category in the
"real" slot, so the page has real music in both (a trained model's clips are minutes away).
The screenshot goes to the test's folder; with ``CONCHSHELL_UPDATE_DOCS_IMAGES=1`` it also
replaces ``docs/images/gallery.png``, the picture the gallery's docs show.

Needs what ``test_mos_browser.py`` needs (Debian's ``chromium`` and ``chromium-driver``) and
skips the same way without them; the piano rolls need the soundfont and the transcriber.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_mos_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401 (a fixture)

from conchshell.data import build as build_module
from conchshell.data import piano
from conchshell.data.build import STANDIN_DIR
from conchshell.data.scenes import category_by_name
from conchshell.gallery import write_gallery
from conchshell.io import atomic_write

ROOT = Path(__file__).resolve().parents[1]
DOCS_IMAGE = ROOT / "docs" / "images" / "gallery.png"
# (photo, clip in the generated slot, clip in the real slot); captions say what is what.
ROWS = (
    ("ocean/ocean004.jpg", "ocean_004", "ocean_006"),
    ("city/city017.jpg", "city_017", "city_018"),
)
WINDOW = (1200, 900)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)",
)

try:
    piano.find_soundfont()
    HAVE_FONT = True
except FileNotFoundError:
    HAVE_FONT = False


@pytest.fixture
def gallery(tmp_path) -> Path:
    if not HAVE_FONT:
        pytest.skip("piano soundfont missing (apt-get install fluidr3mono-gm-soundfont)")
    import soundfile as sf

    scores = {c["id"]: c for c in json.loads((STANDIN_DIR / "scores.json").read_text())["clips"]}
    renderer = piano.PianoRenderer()

    def render(clip_id: str) -> np.ndarray:
        clip = scores[clip_id]
        return build_module._render_clip(renderer, clip, category_by_name(clip["category"]))

    names, captions, references = [], [], []
    for photo, shown, real in ROWS:
        name = Path(photo).stem
        Image.open(STANDIN_DIR / "images" / photo).convert("RGB").save(tmp_path / f"{name}.png")
        sf.write(tmp_path / f"{name}.wav", render(shown), 16000)
        names.append(name)
        captions.append(f"{name}: stand-in clip {shown} as the generated one, {real} as the real")
        references.append(render(real))
    write_gallery(tmp_path, names, captions, title="conchshell gallery", references=references)
    return tmp_path


def test_gallery_loads_in_chromium_and_is_screenshotted(browser, gallery):  # noqa: F811
    from selenium.webdriver.common.by import By

    # the viewport itself, not the window around it, so the screenshot has this exact size
    width, height = WINDOW
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.get((gallery / "index.html").as_uri())
    assert browser.title == "conchshell gallery"
    assert len(browser.find_elements(By.TAG_NAME, "figure")) == 2
    # every picture loads: 2 photos, 4 spectrograms with their piano rolls (600 x 440)
    sizes = browser.execute_script(
        "return Array.from(document.images, i => [i.getAttribute('src'), i.complete, "
        "i.naturalWidth, i.naturalHeight]);"
    )
    assert [s[0] for s in sizes] == [
        "ocean004.png",
        "ocean004.spec.png",
        "ocean004.real.spec.png",
        "city017.png",
        "city017.spec.png",
        "city017.real.spec.png",
    ]
    for src, complete, width, height in sizes:
        assert complete, src
        assert (width, height) == ((256, 256) if ".spec" not in src else (600, 440)), src
    players = browser.execute_script(
        "return Array.from(document.querySelectorAll('audio'), a => a.getAttribute('src'));"
    )
    assert players == ["ocean004.wav", "ocean004.real.wav", "city017.wav", "city017.real.wav"]
    labels = [e.text for e in browser.find_elements(By.CLASS_NAME, "label")]
    assert labels == ["generated", "real", "generated", "real"]
    assert "piano roll" in browser.find_element(By.TAG_NAME, "body").text

    shot = gallery / "screenshot.png"
    assert browser.save_screenshot(str(shot))
    with Image.open(shot) as image:
        assert image.size == WINDOW
        # not a blank page: the spectrograms' and rolls' colours are there
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 1000
    if os.environ.get("CONCHSHELL_UPDATE_DOCS_IMAGES") == "1":
        DOCS_IMAGE.parent.mkdir(exist_ok=True)
        with Image.open(shot) as image, atomic_write(DOCS_IMAGE) as handle:
            # 256 colours keep the page readable at a third of the bytes
            image.convert("RGB").quantize(256).save(handle, format="PNG", optimize=True)
    with Image.open(DOCS_IMAGE) as documented:
        assert documented.format == "PNG" and documented.size == WINDOW
