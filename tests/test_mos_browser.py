"""End to end: one rater rates every item twice in headless Chromium, then the summary is checked.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and the ``selenium`` package; the driver is given
explicitly, so selenium never tries to download one.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from test_mos_fixtures import HOSTILE_MODEL, make_samples

from conchshell.mos import make_app, summary

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)",
)

# (pass 1, pass 2) scores as (i2m, melody, noise) per model: passes differ, so
# the summary must average them.
SCORES = {
    "alpha": ((5, 4, 2), (4, 4, 3)),
    HOSTILE_MODEL: ((2, 1, 5), (1, 2, 5)),
}
RATER = "Ann <b>&amp;</b> 'x'"


@pytest.fixture
def browser():
    # A missing selenium (a dev dependency) fails loudly; only a missing browser skips.
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mos-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=900,1200",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_rate_every_item_twice_in_chromium(browser, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    samples = make_samples(tmp_path)
    with pytest.warns(UserWarning, match="not served"):
        app = make_app(samples, tmp_path / "ratings.sqlite3")
    n = len(app.index)
    with app.running() as base:
        browser.get(base)
        browser.find_element(By.ID, "rater").send_keys(RATER)
        browser.find_element(By.ID, "start").click()

        # the form will not submit until all three scales are answered
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "rating"))
        assert (
            browser.execute_script("return document.getElementById('rating').checkValidity()")
            is False
        )
        first_url = browser.current_url
        browser.find_element(By.ID, "submit").click()
        assert browser.current_url == first_url and browser.find_elements(By.ID, "rating")
        assert summary(app.store.path).rows == []

        shown = []
        for step in range(2 * n):
            form = browser.find_element(By.ID, "rating")
            item = form.find_element(By.NAME, "item").get_attribute("value")
            pass_ = int(form.find_element(By.NAME, "pass").get_attribute("value"))
            progress = browser.find_element(By.ID, "progress").text
            assert f"Rater {RATER}" in progress
            assert f"clip {step + 1} of {2 * n}" in progress and f"pass {pass_} of 2" in progress
            # the picture and the clip really load (through the CSP, by id)
            WebDriverWait(browser, 10).until(
                lambda d: d.execute_script(
                    "const a = document.getElementById('clip');"
                    "const i = document.getElementById('picture');"
                    "return a.readyState >= 1 && i.complete && i.naturalWidth === 8;"
                )
            )
            duration = browser.execute_script("return document.getElementById('clip').duration")
            assert duration == pytest.approx(0.1, abs=1e-3)
            assert browser.execute_script("return document.scripts.length") == 0
            scores = SCORES[app.index[item].model][pass_ - 1]
            for metric, score in zip(("i2m", "melody", "noise"), scores, strict=True):
                browser.find_element(By.CSS_SELECTOR, f"label[for='{metric}-{score}']").click()
            browser.find_element(By.ID, "submit").click()
            WebDriverWait(browser, 10).until(
                lambda d, old=form: (
                    not d.find_elements(By.ID, "rating") or d.find_element(By.ID, "rating") != old
                )
            )
            shown.append((item, pass_))

        done = browser.find_element(By.ID, "done")
        assert done.text == f"Thank you, {RATER}!"
        assert f"You rated all {n} clips twice ({2 * n} ratings)" in browser.page_source
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 - no hostile name ever ran as script
        csp = [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
        assert csp == []

    assert sorted(shown) == sorted((i, p) for i in app.index for p in (1, 2))
    result = summary(app.store.path)
    by_model = {r.model: r for r in result.rows}
    assert by_model["alpha"].mean == {"i2m": 4.5, "melody": 4.0, "noise": 2.5}
    assert by_model[HOSTILE_MODEL].mean == {"i2m": 1.5, "melody": 1.5, "noise": 5.0}
    assert by_model[HOSTILE_MODEL].std == {"i2m": 0.0, "melody": 0.0, "noise": 0.0}
    table = str(result)
    assert "| alpha | 4.50 ± 0.00 | 4.00 ± 0.00 | 2.50 ± 0.00 | 2 | 1 | 4 | 0 |" in table
    assert "| 1.50 ± 0.00 | 1.50 ± 0.00 | 5.00 ± 0.00 | 3 | 1 | 6 | 0 |" in table
