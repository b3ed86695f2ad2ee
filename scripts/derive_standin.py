#!/usr/bin/env python
"""Regenerate the committed material of the stand-in dataset, checksum-checked.

``conchshell/data/standin/`` holds what ``conchshell data build`` turns into a
BOP-layout dataset: 256x256 JPEG originals of real photographs and score
excerpts (note lists) from music21's corpus. This script derives both from their
sources and records every checksum in ``manifest.json``:

* ``images``: downloads the Debian packages named below (``apt-get download``,
  needs ``apt-get update`` once), unpacks them with ``dpkg-deb -x`` into a
  temporary folder (GCompris keeps its photos inside Qt .rcc archives and
  Enlightenment its backgrounds inside Edje files, both read here),
  centre-crops each selected photo to a square, fills transparent sky where a
  panorama tile has one, resizes to 256x256 and writes a JPEG.
* ``scores``: parses music21 corpus files (Bach chorales, string quartets,
  fiddle reels), picks for each clip an excerpt that lasts 8 s at its category's
  tempo and keeps the piano busy, and writes ``scores.json``.

``--check`` derives into a temporary folder and compares with the committed
files and the manifest (sha256 of every source file and every output) instead of
writing; it exits with status 1 and names each difference. Debian image packages
change between releases: if a source's checksum changed, the script says which.

Usage::

    python scripts/derive_standin.py images [--debs DIR] [--check]
    python scripts/derive_standin.py scores [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from conchshell.data.build import _GAIN  # noqa: E402
from conchshell.data.piano import PianoRenderer, silent_fraction  # noqa: E402
from conchshell.data.scenes import CATEGORIES, SceneCategory, perform  # noqa: E402

STANDIN = REPO / "conchshell" / "data" / "standin"
IMAGE_SIZE = 256
JPEG_QUALITY = 90
CLIPS_PER_CATEGORY = 24
CLIP_SECONDS = 8.0

# Licence texts that hold for whole packages (Debian copyright files, Files: *).
TUXPAINT = ("Bill Kendrick", "GPL-2+")
NOAA_PD = "public domain (NOAA photo library)"
PLASMA = "LGPL-3"
LXQT = ("LXQt team", "LGPL-2.1+")

# (category, package, member, title, author, licence, group, sky fill)
# author/licence None: read from the package (GCompris README, Stellarium textures.json).
# Within a category, entries keep their order (ids are numbered in it): add new ones last.
# member "ARCHIVE.rcc::/PATH" is a file inside a Qt resource archive; "ARCHIVE.edj::WxH" is
# the JPEG of that size inside an Edje (Eet) file.
_RCC = (
    "usr/share/gcompris-qt/rcc/explore_monuments.rcc"
    "::/gcompris/src/activities/explore_monuments/resource/"
)
_TUX = "usr/share/tuxpaint/"
_PLASMA = "usr/share/wallpapers/{}/contents/images/1280x1024.jpg"
_LOMIRI = "usr/share/backgrounds/"
_MATE = "usr/share/backgrounds/mate/nature/"
_LXQT = "usr/share/lxqt/wallpapers/"
_NEB = "usr/share/stellarium/nebulae/default/"
_HURRICANE = "usr/share/stellarium/landscapes/hurricane/"
_RCC_ROOT = "usr/share/gcompris-qt/rcc/{}.rcc::/gcompris/src/activities/{}/resource/"
_DETAILS = _RCC_ROOT.format("details", "details") + "image/"
_SEA = _RCC_ROOT.format("clickgame", "clickgame")
_CATEG = _RCC_ROOT.format("categorization", "categorization") + "images/"
_ERASE = _RCC_ROOT.format("erase", "erase")
_WORLD = _RCC_ROOT.format("explore_world_animals", "explore_world_animals") + "animals/"
_SCRATCH = "usr/share/scratch/Media/Backgrounds/"
_MIT = ("MIT Scratch team (Massachusetts Institute of Technology)", "CC-BY-SA-3.0")
_SKIMAGE = "usr/lib/python3/dist-packages/skimage/data/"
# Enlightenment's photographic backgrounds: Edje files holding one JPEG per screen size.
_E_BG = "usr/share/enlightenment/data/backgrounds/{}.edj::1920x1080"
_E_CREDIT = ("Carsten Haitzler and contributors (Enlightenment)", "BSD-2-clause")
OVERCAST = (214, 220, 226)

IMAGES: list[tuple] = [
    # ocean
    ("ocean", "tuxpaint-data", _TUX + "templates/ocean_waves.jpg", "Ocean waves", *TUXPAINT),
    ("ocean", "tuxpaint-data", _TUX + "templates/ocean_splash.jpg", "Ocean splash", *TUXPAINT),
    ("ocean", "tuxpaint-data", _TUX + "templates/lighthouse.jpg", "Lighthouse", *TUXPAINT),
    ("ocean", "tuxpaint-data", _TUX + "templates/jellyfish.jpg", "Jellyfish", *TUXPAINT),
    (
        "ocean",
        "tuxpaint-data",
        _TUX + "starters/reef-back.png",
        "Coral reef (NOAA reef2583)",
        "Thomas K. Gibson, Florida Keys National Marine Sanctuary",
        NOAA_PD,
    ),
    (
        "ocean",
        "plasma-workspace-wallpapers",
        _PLASMA.format("ColdRipple"),
        "Cold Ripple",
        "Risto Saukonpää",
        PLASMA,
    ),
    ("ocean", "mate-backgrounds", _MATE + "Dune.jpg", "Dune", "Marco Cogoni", "GPL-2+"),
    ("ocean", "gcompris-qt-data", _RCC + "france/montStMichel.webp", "Mont Saint-Michel"),
    # A drop falling into open water (GCompris's Fort Sumter shows the sea only at its edge).
    ("ocean", "mate-backgrounds", _MATE + "Aqua.jpg", "Aqua", "Charles Barbin", "GPL-2+"),
    ("ocean", "gcompris-qt-data", _RCC + "usa/castillodeSanMarcos.webp", "Castillo de San Marcos"),
    # Underwater photos from Wikimedia Commons (credits in each activity's README).
    *[
        ("ocean", "gcompris-qt-data", _SEA + f"sea{k}.webp", title)
        for k, title in [
            (1, "Submerged road, Baia archaeological park"),
            (2, "Submerged harbour, Baia archaeological park"),
            (3, "Coral reef seen through a porthole"),
            (4, "Black coral, Milford Sound"),
            (5, "Underwater cave"),
            (6, "Basket starfish on the sea floor"),
        ]
    ],
    ("ocean", "gcompris-qt-data", _ERASE + "dolphin.webp", "Dolphin, Eilat Dolphin Reef"),
    ("ocean", "gcompris-qt-data", _WORLD + "narwhal.webp", "Pod of narwhals"),
    *[
        ("ocean", "gcompris-qt-data", _CATEG + f"fishes/{name}.webp", title)
        for name, title in [
            ("fish10", "Anthias over a coral reef"),
            ("fish14", "Anthias anthias on a reef"),
            ("fish5", "Anthias anthias among red algae"),
            ("fish9", "Clownfish in an anemone"),
            ("fish7", "Red mullet on the Black Sea floor"),
            ("fish20", "Mullets under water"),
        ]
    ],
    ("ocean", "scratch", _SCRATCH + "Nature/beach-malibu.jpg", "Malibu beach", *_MIT),
    ("ocean", "scratch", _SCRATCH + "Nature/wave.jpg", "Wave", *_MIT),
    ("ocean", "scratch", _SCRATCH + "Outdoors/boardwalk.jpg", "Boardwalk by the sea", *_MIT),
    (
        "ocean",
        "sddm-theme-maldives",
        "usr/share/sddm/themes/maldives/background.jpg",
        "Maldives beach and jetty",
        "Dr. Peter Schmidt; Abdurrahman Avci (SDDM Maldives theme)",
        "CC-BY-SA-3.0",
    ),
    # forest
    ("forest", "tuxpaint-data", _TUX + "templates/redwoods_above.jpg", "Redwoods above", *TUXPAINT),
    ("forest", "tuxpaint-data", _TUX + "templates/trees_above.jpg", "Trees above", *TUXPAINT),
    (
        "forest",
        "tuxpaint-data",
        _TUX + "templates/sun_behind_leaves.jpg",
        "Sun behind leaves",
        *TUXPAINT,
    ),
    ("forest", "tuxpaint-data", _TUX + "templates/mossy_log.jpg", "Mossy log", *TUXPAINT),
    ("forest", "tuxpaint-data", _TUX + "templates/mossy_bark.jpg", "Mossy bark", *TUXPAINT),
    (
        "forest",
        "plasma-workspace-wallpapers",
        _PLASMA.format("Path"),
        "Path",
        "Risto Saukonpää",
        PLASMA,
    ),
    (
        "forest",
        "plasma-workspace-wallpapers",
        _PLASMA.format("FallenLeaf"),
        "Fallen Leaf",
        "Martin Klapetek",
        PLASMA,
    ),
    (
        "forest",
        "plasma-workspace-wallpapers",
        _PLASMA.format("OneStandsOut"),
        "One Stands Out",
        "Risto Saukonpää",
        PLASMA,
    ),
    (
        "forest",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "life_by_Aitzol_Berasategi.jpg",
        "life",
        "Aitzol Berasategi",
        "CC-BY-4.0",
    ),
    (
        "forest",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "Dragonfly_by_Bolly.jpg",
        "Dragonfly",
        "Bolly",
        "CC-BY-SA-4.0",
    ),
    ("forest", "scratch", _SCRATCH + "Nature/forest.jpg", "Birch forest", *_MIT),
    ("forest", "scratch", _SCRATCH + "Nature/lake.jpg", "Pond in the woods", *_MIT),
    ("forest", "scratch", _SCRATCH + "Nature/water-and-rocks.jpg", "Woodland stream", *_MIT),
    *[
        ("forest", "enlightenment-data", _E_BG.format(name), title, *_E_CREDIT)
        for name, title in [
            ("Bamboo", "Bamboo grove"),
            ("Snow-Trees", "Birches on a snowy slope"),
            ("Green-Maple", "Maple canopy in spring"),
            ("Red-Maple", "Red maple in autumn"),
        ]
    ],
    # mountain
    (
        "mountain",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "Picos de Europa",
        "Aitzol Berasategi",
        "CC-BY-4.0",
    ),
    (
        "mountain",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "aitzgorri_by_Aitzol_Berasategi.jpg",
        "Aitzgorri",
        "Aitzol Berasategi",
        "CC-BY-4.0",
    ),
    ("mountain", "tuxpaint-data", _TUX + "templates/cliff.jpg", "Cliff", *TUXPAINT),
    ("mountain", "lxqt-themes", _LXQT + "fog.jpg", "fog", *LXQT),
    ("mountain", "gcompris-qt-data", _RCC + "wonders/machuPicchu.webp", "Machu Picchu"),
    ("mountain", "gcompris-qt-data", _RCC + "wonders/greatWallofChina.webp", "Great Wall of China"),
    ("mountain", "gcompris-qt-data", _RCC + "usa/canyondeChelly.webp", "Canyon de Chelly"),
    ("mountain", "gcompris-qt-data", _RCC + "usa/navajo.webp", "Betatakin cliff dwellings"),
    *[
        (
            "mountain",
            "stellarium-data",
            f"{_HURRICANE}hurricane{k}.png",
            f"Hurricane Ridge panorama, tile {k}",
            "Johan Meuris and Robert Spearman (Stellarium landscape)",
            "GPL-2+",
            "stellarium-hurricane-panorama",
            OVERCAST,
        )
        for k in range(1, 9)
    ],
    ("mountain", "gcompris-qt-data", _RCC + "usa/mountRushmore.webp", "Mount Rushmore"),
    (
        "mountain",
        "gcompris-qt-data",
        _CATEG + "monuments/mountRushmore.webp",
        "Mount Rushmore from below",
    ),
    ("mountain", "lxqt-themes", _LXQT + "Valendas.png", "Valendas", *LXQT),
    ("mountain", "scratch", _SCRATCH + "Nature/grand-canyon.jpg", "Grand Canyon", *_MIT),
    ("mountain", "scratch", _SCRATCH + "Nature/canyon.jpg", "Canyon rim", *_MIT),
    ("mountain", "scratch", _SCRATCH + "Outdoors/train-tracks1.jpg", "Tracks below a ridge", *_MIT),
    # night_sky (credits from Stellarium's textures.json)
    *[
        ("night_sky", "stellarium-data", f"{_NEB}{name}.png", title)
        for name, title in [
            ("m11", "M11, Wild Duck Cluster"),
            ("m41", "M41"),
            ("n300", "NGC 300"),
            ("n908", "NGC 908"),
            ("n2207", "NGC 2207 and IC 2163"),
            ("n2736", "NGC 2736, Pencil Nebula"),
            ("n3199", "NGC 3199"),
            ("n3532", "NGC 3532"),
            ("n3699", "NGC 3699"),
            ("n5189", "NGC 5189"),
            ("n2903oleg", "NGC 2903"),
            ("n3718oleg", "NGC 3718"),
            ("n6537", "NGC 6537, Red Spider Nebula"),
            ("rcw49", "RCW 49"),
            ("n5128", "NGC 5128, Centaurus A"),
            ("n2808", "NGC 2808"),
            ("hercules_cluster", "Hercules galaxy cluster"),
            ("n55", "NGC 55"),
            ("n1313", "NGC 1313"),
            ("n7793", "NGC 7793"),
            ("ic1295", "IC 1295"),
            ("n4945", "NGC 4945"),
            ("n6769", "NGC 6769 and NGC 6770"),
            ("n1232", "NGC 1232"),
            ("n3766", "NGC 3766"),
            ("m67", "M67"),
            ("n6210", "NGC 6210"),
            ("m6", "M6, Butterfly Cluster"),
        ]
    ],
    (
        "night_sky",
        "lomiri-wallpapers-20.04",
        _LOMIRI + "Infinite-Sea_by_Aury88.jpg",
        "Infinite Sea (Milky Way over the sea)",
        "Aury88",
        "CC-BY-SA-3.0",
    ),
    (
        "night_sky",
        "python3-skimage",
        _SKIMAGE + "hubble_deep_field.jpg",
        "Hubble eXtreme Deep Field",
        "NASA, ESA (Hubble Space Telescope)",
        "public domain (NASA; see skimage.data.hubble_deep_field)",
    ),
    # sunset
    (
        "sunset",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "sunset_by_Aitzol_Berasategi.jpg",
        "sunset",
        "Aitzol Berasategi",
        "CC-BY-4.0",
    ),
    (
        "sunset",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "seeding_by_Clements_Engelhardt.jpg",
        "seeding",
        "Clemens Engelhardt",
        "CC0-1.0",
    ),
    ("sunset", "lxqt-themes", _LXQT + "after-the-rain.jpg", "after the rain", *LXQT),
    (
        "sunset",
        "plasma-workspace-wallpapers",
        _PLASMA.format("EveningGlow"),
        "Evening Glow",
        "Ian Hex",
        PLASMA,
    ),
    (
        "sunset",
        "plasma-workspace-wallpapers",
        _PLASMA.format("summer_1am"),
        "summer 1am",
        "Risto Saukonpää",
        PLASMA,
    ),
    (
        "sunset",
        "plasma-workspace-wallpapers",
        _PLASMA.format("DarkestHour"),
        "Darkest Hour",
        "Risto Saukonpää",
        PLASMA,
    ),
    (
        "sunset",
        "plasma-workspace-wallpapers",
        _PLASMA.format("BytheWater"),
        "By the water",
        "Maciej Wiklo",
        PLASMA,
    ),
    (
        "sunset",
        "tuxpaint-data",
        _TUX + "starters/skyline-sf-dusk-back.jpeg",
        "San Francisco at dusk (NOAA line1989)",
        "Rich Bourgerie, NOAA",
        NOAA_PD,
    ),
    ("sunset", "tuxpaint-data", _TUX + "templates/trees_at_dusk.jpg", "Trees at dusk", *TUXPAINT),
    (
        "sunset",
        "tuxpaint-data",
        _TUX + "templates/sun_behind_clouds.jpg",
        "Sun behind clouds",
        *TUXPAINT,
    ),
    ("sunset", "enlightenment-data", _E_BG.format("Sunset-Clouds"), "Sunset clouds", *_E_CREDIT),
    (
        "sunset",
        "scribus-template",
        "usr/share/scribus/templates/br2/sunset.jpg",
        "Skyline at sunset (Scribus brochure template br2)",
        "Riku Leino",
        "public domain (dedicated by the author; Debian copyright of scribus-template)",
    ),
    # city
    *[
        ("city", "gcompris-qt-data", _RCC + member, title)
        for member, title in [
            ("france/eiffelTower.webp", "Eiffel Tower"),
            ("germany/berlinCathedral.webp", "Berlin Cathedral"),
            ("germany/brandenburgGate.webp", "Brandenburg Gate"),
            ("usa/castleClinton.webp", "Castle Clinton, Battery Park, New York"),
            ("usa/statueofLiberty.webp", "Statue of Liberty"),
            ("usa/lincolnMemorial.webp", "Lincoln Memorial"),
            ("india/hawaMahal.webp", "Hawa Mahal, Jaipur"),
            ("india/charminar.webp", "Charminar, Hyderabad"),
            ("india/victoriaMemorial.webp", "Victoria Memorial, Kolkata"),
            ("india/gatewayofIndia.webp", "Gateway of India, Mumbai"),
            ("france/reimsCathedral.webp", "Reims Cathedral"),
            ("france/palaisdesPapes.webp", "Palais des Papes, Avignon"),
            ("wonders/colosseum.webp", "Colosseum, Rome"),
        ]
    ],
    (
        "city",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "Bridge_by_Sander_Klootwijk.jpg",
        "Bridge",
        "Sander Klootwijk",
        "CC-BY-SA-4.0",
    ),
    *[
        ("city", "gcompris-qt-data", _RCC + member, title)
        for member, title in [
            ("india/mysorePalace.webp", "Mysore Palace"),
            ("france/arlesAmphitheater.webp", "Arles Amphitheatre"),
            ("india/goldenTemple.webp", "Golden Temple, Amritsar"),
        ]
    ],
    *[
        ("city", "gcompris-qt-data", _DETAILS + f"{name}_background.webp", title)
        for name, title in [
            ("Louvre_2007_02_24_c", "Louvre pyramid at dusk"),
            ("TowerBridgeLondon", "Tower Bridge, London"),
            ("NDP", "Notre-Dame de Paris at night"),
            ("OperaSidney", "Sydney Opera House at night"),
            ("TourEiffel", "Eiffel Tower from below"),
        ]
    ],
    *[
        ("city", "gcompris-qt-data", _CATEG + f"monuments/{name}.webp", title)
        for name, title in [
            ("empireState", "Empire State Building, New York"),
            ("leMusee", "Louvre courtyard"),
            ("usCapitol", "US Capitol, Washington"),
            ("arcDeTriomphe", "Arc de Triomphe du Carrousel, Paris"),
            ("zimniPalace", "Winter Palace at night, Saint Petersburg"),
            ("cathedral", "Santiago de Compostela Cathedral"),
            ("monument3", "Kaiser-Jubiläums-Kirche, Vienna"),
            ("burj", "Burj Khalifa, Dubai"),
            ("operaHouse", "Sydney Opera House"),
            ("IndiaGate", "India Gate, New Delhi"),
        ]
    ],
    ("city", "scratch", _SCRATCH + "Outdoors/city-with-water.jpg", "Skyline at night", *_MIT),
    ("city", "scratch", _SCRATCH + "Outdoors/city-with-water2.jpg", "Skyline by day", *_MIT),
    ("city", "scratch", _SCRATCH + "Outdoors/building-at-mit.jpg", "Building at MIT", *_MIT),
]

# Stellarium's nebula credits -> licence (Debian copyright of stellarium-data, ESO/ESA policy).
STELLARIUM_LICENCES = {
    "ESO": "CC-BY-4.0 (ESO image policy)",
    "ESA/Hubble & NASA": "CC-BY-4.0 (ESA/Hubble image policy)",
    "ESA/Hubble and NASA": "CC-BY-4.0 (ESA/Hubble image policy)",
    "NASA": "public domain (NASA)",
    "Grasslands Observatory": "free use with credit (Tim Hunter and James McGaha)",
    "Oleg Bryzgalov": "CC-BY-3.0",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_rcc(blob: bytes) -> dict[str, bytes]:
    """Files of a Qt binary resource (.rcc): header, tree, data and names sections."""
    if blob[:4] != b"qres":
        raise ValueError("not a Qt resource archive")
    version, tree, data, names = struct.unpack(">iiii", blob[4:20])
    entry_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        start = names + offset + 6  # length (2) + hash (4)
        return blob[start : start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}

    def walk(index: int, prefix: str) -> None:
        pos = tree + index * entry_size
        name_offset, flags = struct.unpack(">iH", blob[pos : pos + 6])
        name = name_at(name_offset) if index else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">ii", blob[pos + 6 : pos + 14])
            for child in range(first, first + count):
                walk(child, f"{prefix}{name}/")
            return
        (offset,) = struct.unpack(">i", blob[pos + 10 : pos + 14])
        (size,) = struct.unpack(">I", blob[data + offset : data + offset + 4])
        raw = blob[data + offset + 4 : data + offset + 4 + size]
        if flags & 1:  # zlib, prefixed by the uncompressed size
            raw = zlib.decompress(raw[4:])
        elif flags & 4:
            raise ValueError(f"zstd-compressed resource {prefix}{name} is not supported")
        files[prefix + name] = raw

    walk(0, "")
    return files


def edj_jpeg(blob: bytes, size: str) -> bytes:
    """The JPEG stream of the given size ("1920x1080") stored in an Edje/Eet file.

    Enlightenment keeps each background as lossy Eet images: plain JPEG streams,
    one per screen size. Each is cut from its start marker, over its header
    segments, to the end marker after its first scan (entropy-coded data never
    holds a bare 0xFFD9).
    """
    width, height = (int(v) for v in size.split("x"))
    start = blob.find(b"\xff\xd8\xff")
    while start != -1:
        pos = start + 2
        while blob[pos + 1] != 0xDA:  # header segments (length-prefixed) up to the first scan
            pos += 2 + struct.unpack(">H", blob[pos + 2 : pos + 4])[0]
        end = blob.find(b"\xff\xd9", pos) + 2
        stream = blob[start:end]
        try:
            found = Image.open(io.BytesIO(stream)).size
        except OSError:
            found = None
        if found == (width, height):
            return stream
        start = blob.find(b"\xff\xd8\xff", start + 3)
    raise KeyError(f"no {size} JPEG in the Edje file")


def parse_gcompris_readme(text: str) -> dict[str, tuple[str, str, str]]:
    """Map 'usa/statueofLiberty.webp' -> (author, licence, source url).

    Two layouts occur: blocks with ``Copyright``/``License``/``Source``/``Files:``
    fields, and (the details activity) blocks that list bare file names and credit
    the photograph in a ``Comment: based on a photo by X, license L, source at URL``.
    """
    out: dict[str, tuple[str, str, str]] = {}
    for block in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^(Copyright|License|Source): *(.*)$", block, flags=re.M))
        if "Files:" in block:
            files = block.split("Files:", 1)[1].split()
            credit = (
                fields.get("Copyright", ""),
                fields.get("License", ""),
                fields.get("Source", ""),
            )
        else:
            files = re.findall(r"^\s*([\w.-]+\.(?:webp|png|jpg|svg))\s*$", block, flags=re.M)
            photo = re.search(
                r"^Comment: based on a photo by (.+?), license (.+?), source at (\S+)",
                block,
                flags=re.M,
            )
            if photo is None:
                continue
            # The photographer's licence governs; GCompris's derivative adds its own.
            credit = (
                f"{photo.group(1)} (photo); {fields.get('Copyright', '')} (GCompris)",
                f"{photo.group(2)} (photo); {fields.get('License', '')} (GCompris derivative)",
                photo.group(3),
            )
        for name in files:
            out[name] = credit
    return out


def gcompris_credit(
    files: dict[str, bytes], inner: str, cache: dict[str, dict[str, tuple[str, str, str]]]
) -> tuple[str, str, str]:
    """Credit of a file in a GCompris archive, from the nearest README above it that names it."""
    parts = inner.split("/")
    for depth in range(len(parts) - 1, 0, -1):
        readme = "/".join(parts[:depth]) + "/README"
        if readme not in files:
            continue
        if readme not in cache:
            cache[readme] = parse_gcompris_readme(files[readme].decode("utf-8"))
        key = "/".join(parts[depth:])
        if key in cache[readme]:
            return cache[readme][key]
    raise KeyError(f"no README above {inner} credits it; give author and licence explicitly")


def stellarium_credits(text: str) -> dict[str, str]:
    pairs = re.findall(r'"imageCredits"\s*:\s*(\{[^}]*\})\s*,\s*"imageUrl"\s*:\s*"([^"]+)"', text)
    out = {}
    for credit, url in pairs:
        short = re.search(r'"[sS]hort"\s*:\s*"([^"]+)"', credit)
        out[url] = short.group(1) if short else ""
    return out


def fetch_packages(packages: list[str], work: Path, debs: Path | None) -> dict[str, dict]:
    """Download (or take from ``debs``) and unpack each package; return version and checksum."""
    info = {}
    for package in packages:
        found = sorted((debs or work).glob(f"{package}_*.deb"))
        if not found:
            subprocess.run(["apt-get", "download", package], cwd=work, check=True)
            found = sorted(work.glob(f"{package}_*.deb"))
        deb = found[-1]
        target = work / "x" / package
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
        version = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
        ).stdout.strip()
        info[package] = {"version": version, "deb_sha256": sha256(deb.read_bytes()), "root": target}
    return info


def square_thumbnail(data: bytes, fill: tuple[int, int, int] | None) -> bytes:
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (*(fill or (0, 0, 0)), 255))
        image = Image.alpha_composite(background, image)
    image = image.convert("RGB")
    side = min(image.size)
    left = (image.width - side) // 2
    top = (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def derive_images(out: Path, debs: Path | None) -> dict:
    packages = sorted({entry[1] for entry in IMAGES})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        info = fetch_packages(packages, work, debs)
        rcc_cache: dict[str, dict[str, bytes]] = {}
        readmes: dict[str, dict[str, tuple[str, str, str]]] = {}
        credits = stellarium_credits(
            (info["stellarium-data"]["root"] / _NEB / "textures.json").read_text()
        )
        counters = {c.name: 0 for c in CATEGORIES}
        records = []
        for entry in IMAGES:
            category, package, member, title = entry[:4]
            author = entry[4] if len(entry) > 4 else None
            licence = entry[5] if len(entry) > 5 else None
            group = entry[6] if len(entry) > 6 else None
            fill = entry[7] if len(entry) > 7 else None
            root = info[package]["root"]
            url = ""
            if ".edj::" in member:
                archive, size = member.split("::", 1)
                data = edj_jpeg((root / archive).read_bytes(), size)
            elif "::" in member:
                archive, inner = member.split("::", 1)
                if archive not in rcc_cache:
                    rcc_cache[archive] = read_rcc((root / archive).read_bytes())
                files = rcc_cache[archive]
                data = files[inner]
                if author is None:
                    author, licence, url = gcompris_credit(files, inner, readmes)
            else:
                data = (root / member).read_bytes()
            if package == "stellarium-data" and author is None:
                credit = credits[Path(member).name]
                author = credit
                licence = STELLARIUM_LICENCES[credit]
            index = counters[category]
            counters[category] += 1
            image_id = f"{category}{index:03d}"
            jpeg = square_thumbnail(data, fill)
            relative = f"images/{category}/{image_id}.jpg"
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            (out / relative).write_bytes(jpeg)
            derivation = "centre square crop, Lanczos resize to 256x256, JPEG q90"
            if fill is not None:
                derivation = f"transparent sky filled with RGB{tuple(fill)}, " + derivation
            records.append(
                {
                    "id": image_id,
                    "category": category,
                    "file": relative,
                    "sha256": sha256(jpeg),
                    "group": group or image_id,
                    "title": title,
                    "author": author,
                    "licence": licence,
                    "url": url,
                    "package": package,
                    "package_version": info[package]["version"],
                    "member": member,
                    "source_sha256": sha256(data),
                    "derivation": derivation,
                }
            )
        packages_info = {
            name: {"version": meta["version"], "deb_sha256": meta["deb_sha256"]}
            for name, meta in info.items()
        }
    return {"packages": packages_info, "images": records}


# ---------------------------------------------------------------------------- scores


def _score_notes(score) -> tuple[list[tuple[float, float, int]], list[float], float]:
    """All sounding notes (offset, duration, pitch), measure starts, and the end."""
    from music21 import stream

    flat = score.stripTies().flatten()
    notes = []
    for element in flat.notes:
        duration = float(element.quarterLength)
        if duration <= 0:  # grace notes
            continue
        for pitch in element.pitches:
            notes.append((float(element.offset), duration, int(pitch.midi)))
    notes.sort()
    parts = score.parts if score.parts else [score]
    measures = [float(m.offset) for m in parts[0].getElementsByClass(stream.Measure)]
    end = max(on + d for on, d, _ in notes) if notes else 0.0
    return notes, measures, end


def _coverage(notes, start: float, stop: float) -> float:
    """Fraction of [start, stop) during which at least one note sounds."""
    spans = sorted(
        (max(on, start), min(on + d, stop)) for on, d, _ in notes if on < stop and on + d > start
    )
    covered, cursor = 0.0, start
    for a, b in spans:
        if b <= cursor:
            continue
        covered += b - max(a, cursor)
        cursor = b
    return covered / (stop - start)


def _windows(notes, measures, end, window: float):
    """Measure-aligned windows, in score order, that keep the piano busy on paper."""
    for start in measures[1:] if len(measures) > 1 else measures:
        stop = start + window
        if stop > end + 1e-6:
            return
        onsets = [on for on, _, _ in notes if start <= on < stop]
        if not onsets or onsets[0] > start + 1e-6 or max(onsets) < start + 0.8 * window:
            continue
        if _coverage(notes, start, stop) < 0.97:
            continue
        yield start


def _excerpt(notes, start: float, window: float) -> list[list[float]]:
    stop = start + window
    return [
        [round(on - start, 6), round(min(d, stop - on), 6), p]
        for on, d, p in notes
        if start <= on < stop
    ]


def _candidates(category: SceneCategory) -> list[str]:
    from music21 import corpus

    if category.music == "chorale":
        paths = corpus.getComposer("bach")
    elif category.music == "quartet":
        paths = [
            p
            for composer in ("mozart", "haydn", "beethoven")
            for p in corpus.getComposer(composer)
            if "movement" in str(p)
        ]
    elif category.music == "reel":
        paths = [p for p in corpus.getComposer("ryansMammoth") if "Reel" in Path(str(p)).name]
    else:
        raise ValueError(f"unknown music source {category.music!r}")
    return sorted(str(p) for p in paths)


def derive_scores(out: Path) -> dict:
    import music21
    from music21 import corpus

    corpus_root = Path(music21.__file__).parent / "corpus"
    renderer = PianoRenderer()
    used: set[str] = set()
    clips = []
    for category in CATEGORIES:
        window = CLIP_SECONDS * category.tempo / 60.0
        chosen = 0
        for path in _candidates(category):
            if chosen == CLIPS_PER_CATEGORY:
                break
            if path in used:
                continue
            score = corpus.parse(path)
            parts = len(score.parts) if score.parts else 1
            if category.music == "chorale" and parts != 4:
                continue
            if category.music == "quartet" and parts < 3:
                continue
            key = score.analyze("key")
            if category.mode is not None and key.mode != category.mode:
                continue
            notes, measures, end = _score_notes(score)
            # The first window that also sounds busy once played: rendered with the
            # category's character, at most 5 % of it may be silent (the build allows 10 %).
            starts = []
            for start in _windows(notes, measures, end, window):
                excerpt = _excerpt(notes, start, window)
                wave = renderer.render(perform(excerpt, category), int(CLIP_SECONDS * 16000))
                if silent_fraction(wave * _GAIN) <= 0.05:
                    starts.append(start)
                    break
            if not starts:
                continue
            used.add(path)
            relative = str(Path(path).relative_to(corpus_root))
            meta = score.metadata
            clips.append(
                {
                    "id": f"{category.name}_{chosen:03d}",
                    "category": category.name,
                    "corpus_path": relative,
                    "source_sha256": sha256(Path(path).read_bytes()),
                    "composer": (meta.composer if meta and meta.composer else "")
                    or relative.split("/")[0],
                    "title": (meta.title if meta and meta.title else "") or Path(relative).stem,
                    "key": f"{key.tonic.name} {key.mode}",
                    "start_ql": starts[0],
                    "window_ql": window,
                    "licence": "composition public domain; encoding from the music21 corpus "
                    "(music21 is BSD-3-Clause; see music21/corpus/license.txt)",
                    "notes": _excerpt(notes, starts[0], window),
                }
            )
            chosen += 1
        if chosen < CLIPS_PER_CATEGORY:
            raise RuntimeError(f"only {chosen} excerpts found for {category.name}")
        print(f"{category.name}: {chosen} clips", flush=True)
    payload = {"music21_version": music21.__version__, "clips": clips}
    text = json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
    (out / "scores.json").write_text(text, encoding="utf-8")
    return {
        "file": "scores.json",
        "sha256": sha256(text.encode("utf-8")),
        "music21_version": music21.__version__,
        "clips": len(clips),
    }


# ---------------------------------------------------------------------------- attribution


def write_attribution(manifest: dict, root: Path) -> None:
    """ATTRIBUTION.md: every photograph and score excerpt with author, licence and source."""
    lines = [
        "# Attribution: conchshell stand-in dataset",
        "",
        "Photographs are 256x256 derivatives (centre square crop, resize; augmented copies add",
        "a mirror, crop and colour jitter) of images shipped in Debian packages. Each keeps the",
        "licence of its source; the Debian package, its version and the path inside it are given,",
        "and",
        "`manifest.json` records the sha256 of every source file and derivative.",
        "",
        "Music: excerpts of scores from the music21 corpus (music21 is BSD-3-Clause; the",
        "compositions are public domain; see `music21/corpus/license.txt` for the encodings),",
        "played on the Yamaha Grand Piano preset of FluidR3Mono_GM.sf3 (Debian package",
        "`fluidr3mono-gm-soundfont`, MIT licence, Frank Wen and contributors) with",
        "tinysoundfont (MIT).",
        "",
        "## Photographs",
        "",
        "| id | title | author | licence | source (Debian package version: path) |",
        "|---|---|---|---|---|",
    ]
    for r in manifest.get("images", []):
        source = f"{r['package']} {r['package_version']}: `{r['member']}`"
        if r.get("url"):
            source += f" (original: {r['url']})"
        lines.append(f"| {r['id']} | {r['title']} | {r['author']} | {r['licence']} | {source} |")
    scores_file = root / "scores.json"
    if scores_file.exists():
        clips = json.loads(scores_file.read_text(encoding="utf-8"))["clips"]
        lines += [
            "",
            "## Score excerpts",
            "",
            "| clip | composer | title | music21 corpus file | key | excerpt (quarter notes) |",
            "|---|---|---|---|---|---|",
        ]
        for c in clips:
            span = f"{c['start_ql']:g} + {c['window_ql']:g}"
            lines.append(
                f"| {c['id']} | {c['composer']} | {c['title']} | `{c['corpus_path']}` | "
                f"{c['key']} | {span} |"
            )
    (root / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------- main


def _load_manifest(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"format": 1}


def _compare(fresh: Path, committed: Path, names: list[str]) -> list[str]:
    problems = []
    for name in names:
        a, b = fresh / name, committed / name
        if not b.exists():
            problems.append(f"{name}: missing from the committed material")
        elif sha256(a.read_bytes()) != sha256(b.read_bytes()):
            problems.append(f"{name}: differs from the committed file")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["images", "scores"])
    parser.add_argument("--debs", type=Path, help="folder already holding the .deb files")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)

    manifest_path = STANDIN / "manifest.json"
    manifest = _load_manifest(manifest_path)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) if args.check else STANDIN
        target.mkdir(parents=True, exist_ok=True)
        if args.what == "images":
            section = derive_images(target, args.debs)
            names = [record["file"] for record in section["images"]]
            problems = []
            if args.check:
                old = {r["id"]: r for r in manifest.get("images", [])}
                for record in section["images"]:
                    before = old.get(record["id"])
                    if before and before["source_sha256"] != record["source_sha256"]:
                        problems.append(
                            f"{record['id']}: source {record['package']}:{record['member']} "
                            "changed (sha256 differs from the manifest)"
                        )
                problems += _compare(target, STANDIN, names)
            else:
                manifest["packages"] = section["packages"]
                manifest["images"] = section["images"]
        else:
            section = derive_scores(target)
            problems = _compare(target, STANDIN, ["scores.json"]) if args.check else []
            if not args.check:
                manifest["scores"] = section
        if args.check:
            for line in problems:
                print("MISMATCH", line)
            print("ok" if not problems else f"{len(problems)} mismatches")
            return 1 if problems else 0
    manifest["image_size"] = IMAGE_SIZE
    write_attribution(manifest, STANDIN)
    manifest_path.write_text(
        json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(f"wrote {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
