"""Packaging metadata: the licence in the SPDX form setuptools asks for since 2025 (PEP 639).

setuptools warns on every build that a TOML-table ``project.license`` is deprecated and stops
accepting it on 2027-02-18; the SPDX string with ``license-files`` is the form it wants.
Checked by reading pyproject.toml (building a wheel takes a network and half a minute):
``pip wheel --no-deps -w /tmp/whl .`` builds it without that warning, with
``License-Expression: Apache-2.0`` and both license files in the wheel's METADATA.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_an_spdx_expression_with_license_files():
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    patterns = project["license-files"]
    assert patterns == ["LICENSE*", "conchshell/data/standin/ATTRIBUTION.md"]
    matched = {str(p.relative_to(ROOT)) for pattern in patterns for p in ROOT.glob(pattern)}
    # every pattern matches a file (PEP 639 makes an empty match an error)
    assert matched == {"LICENSE", "conchshell/data/standin/ATTRIBUTION.md"}
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    # a License :: classifier beside a license expression is refused by setuptools
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]


def test_build_backend_knows_the_spdx_form():
    requires = _pyproject()["build-system"]["requires"]
    assert "setuptools>=77.0.3" in requires
