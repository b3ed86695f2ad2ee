"""The MOS listening-test app: sample discovery, HTTP behaviour, storage and the summary.

Requests go to a real server on an ephemeral 127.0.0.1 port through
``http.client``, which sends paths exactly as written (no ``..`` folding).
"""

from __future__ import annotations

import http.client
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import warnings
from urllib.parse import quote, urlencode, urlsplit

import pytest
from test_mos_fixtures import HOSTILE_MODEL, HOSTILE_STEM, make_samples, write_pair

from conchshell.mos import MOSApp, RatingStore, make_app, scan_samples, serve, summary
from conchshell.mos.store import rating_sequence

# -- helpers ---------------------------------------------------------------------


def request(base, method, path, body=None, headers=None):
    """Send one request; returns (status, headers dict with lower-case keys, body bytes)."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_rating(base, rater, item, pass_, i2m="3", melody="3", noise="3", extra=(), headers=None):
    fields = [("rater", rater), ("item", item), ("pass", str(pass_))]
    fields += [("i2m", i2m), ("melody", melody), ("noise", noise), *extra]
    fields = [(k, v) for k, v in fields if v is not None]
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    return request(base, "POST", "/rate", urlencode(fields).encode(), hdrs)


def current_step(base, rater):
    """The (item, pass, position, total) the rating page shows, or None on the done page."""
    status, _, body = request(base, "GET", "/rate?rater=" + quote(rater, safe=""))
    assert status == 200
    html = body.decode()
    if 'id="done"' in html:
        return None
    item = re.search(r'name="item" value="([0-9a-f]{16})"', html)[1]
    pass_ = int(re.search(r'name="pass" value="([12])"', html)[1])
    position, total = map(int, re.search(r"clip (\d+) of (\d+)", html).groups())
    return item, pass_, position, total


def count_rows(app):
    with sqlite3.connect(app.store.path) as con:
        return con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]


@pytest.fixture
def samples(tmp_path):
    return make_samples(tmp_path)


@pytest.fixture
def app(samples, tmp_path):
    with pytest.warns(UserWarning, match="not served"):
        return make_app(samples, tmp_path / "ratings.sqlite3")


@pytest.fixture
def base(app):
    with app.running() as url:
        yield url


def some_item(app, model="alpha"):
    return next(s.id for s in app.index.values() if s.model == model)


# -- discovery --------------------------------------------------------------------


def test_scan_indexes_pairs_and_counts_what_it_skips(samples):
    with pytest.warns(UserWarning) as record:
        index = scan_samples(samples)
    message = str(record[0].message)
    assert "2 files" in message  # notes.txt is not a sample file: ignored silently
    assert "1 x clip without a picture" in message and "orphan.wav" in message
    assert "1 x picture without a clip" in message and "lonely.png" in message
    assert len(index) == 5
    assert index.models == sorted(["alpha", HOSTILE_MODEL])
    stems = {(s.model, s.stem) for s in index.values()}
    assert (HOSTILE_MODEL, HOSTILE_STEM) in stems
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in index)
    a2 = next(s for s in index.values() if s.stem == "a2")
    assert a2.image.name == "a2.jpg" and a2.image_type == "image/jpeg"
    # ids are stable: a second scan gives the same ones
    assert list(scan_samples(samples, warn=False)) == list(index)


def test_flat_folder_is_one_model_named_after_it(tmp_path):
    flat = tmp_path / "my_model"
    write_pair(flat, "x", seed=1)
    write_pair(flat, "y", picture=".jpeg", seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index = scan_samples(flat)
    assert index.models == ["my_model"] and len(index) == 2
    assert index.describe() == "2 samples from 1 models (my_model: 2)"


def test_scan_errors_and_unsafe_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_samples(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no clip\\+picture pairs"):
        scan_samples(tmp_path / "empty")
    outside = tmp_path / "outside"
    write_pair(outside, "secret", seed=1)
    root = tmp_path / "root"
    write_pair(root / "m", "ok", seed=2)
    write_pair(root / "m", "two", seed=3)
    write_pair(root / "m", "two", picture=".jpg", seed=3)  # two pictures for one clip
    os.symlink(outside / "secret.wav", root / "m" / "leak.wav")
    os.symlink(outside / "secret.png", root / "m" / "leak.png")
    os.symlink(outside, root / "linked_model")
    with pytest.warns(UserWarning, match="not served") as record:
        index = scan_samples(root)
    message = str(record[0].message)
    assert "clip with more than one picture ('m/two.wav')" in message
    assert "3 x link points outside the samples folder" in message
    assert [s.stem for s in index.values()] == ["ok"]


# -- pages and headers --------------------------------------------------------------


def test_start_page_and_security_headers(base):
    status, headers, body = request(base, "GET", "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp  # no script may run
    assert "media-src 'self'" in csp and "form-action 'self'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert b"<script" not in body and b'name="rater"' in body
    status, headers, body = request(base, "GET", "/style.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    status, _, body = request(base, "HEAD", "/")
    assert status == 200 and body == b""


def test_hostile_names_never_reach_a_page(app, base):
    rater = "<script>alert('r')</script>\"'><b>x"
    status, _, body = request(base, "GET", "/rate?rater=" + quote(rater, safe=""))
    assert status == 200
    html = body.decode()
    assert "&lt;script&gt;alert(&#x27;r&#x27;)&lt;/script&gt;&quot;&#x27;&gt;&lt;b&gt;x" in html
    assert "<script" not in html and "<b>" not in html
    # file and model names are never shown (raters stay blind), however hostile
    assert "alert(1)" not in html and "model" not in html and "alpha" not in html
    # walk the whole test: no page of it carries the hostile names either
    for _ in range(2 * len(app.index)):
        item, pass_, _, _ = current_step(base, rater)
        _, _, page = request(base, "GET", "/rate?rater=" + quote(rater, safe=""))
        assert b"<script" not in page and b"onerror" not in page
        assert post_rating(base, rater, item, pass_)[0] == 303
    assert current_step(base, rater) is None


def test_hostile_file_is_served_by_id(app, base, samples):
    sample = next(s for s in app.index.values() if s.stem == HOSTILE_STEM)
    status, headers, body = request(base, "GET", f"/audio/{sample.id}")
    assert status == 200 and headers["content-type"] == "audio/wav"
    assert body == (samples / HOSTILE_MODEL / f"{HOSTILE_STEM}.wav").read_bytes()
    status, headers, body = request(base, "GET", f"/image/{sample.id}")
    assert status == 200 and headers["content-type"] == "image/png"
    assert body[:8] == b"\x89PNG\r\n\x1a\n"


def test_audio_byte_ranges(app, base):
    sample = app.index[some_item(app)]
    data = sample.audio.read_bytes()
    status, headers, body = request(
        base, "GET", f"/audio/{sample.id}", headers={"Range": "bytes=10-19"}
    )
    assert status == 206 and body == data[10:20]
    assert headers["content-range"] == f"bytes 10-19/{len(data)}"
    status, _, body = request(base, "GET", f"/audio/{sample.id}", headers={"Range": "bytes=-4"})
    assert status == 206 and body == data[-4:]
    status, _, body = request(base, "GET", f"/audio/{sample.id}", headers={"Range": "bytes=100-"})
    assert status == 206 and body == data[100:]
    status, _, _ = request(
        base, "GET", f"/audio/{sample.id}", headers={"Range": f"bytes={len(data)}-"}
    )
    assert status == 416


@pytest.mark.parametrize(
    "path",
    [
        "/audio/../../etc/passwd",
        "/audio/..%2f..%2f..%2fetc%2fpasswd",
        "/image/%2e%2e/%2e%2e/etc/passwd",
        "/audio/0123456789abcdef",  # well-formed but unknown
        "/audio/ABCDEF0123456789",
        "/audio/",
        "/image/a1.png",
        "/../../etc/passwd",
        "/etc/passwd",
        "/samples/alpha/a1.wav",
    ],
)
def test_unknown_paths_are_404_and_leak_nothing(base, path):
    status, headers, body = request(base, "GET", path)
    assert status == 404
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert b"root:" not in body and b"RIFF" not in body
    assert b"<script" not in body


def test_media_of_an_item_whose_file_vanished_is_404(app, base):
    sample = app.index[some_item(app)]
    sample.audio.unlink()
    status, _, body = request(base, "GET", f"/audio/{sample.id}")
    assert status == 404 and b"no longer on disk" in body


# -- rating submissions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("i2m", "0", "i2m must be between 1 and 5, got 0."),
        ("melody", "6", "melody must be between 1 and 5, got 6."),
        ("noise", "3.5", "noise must be a whole number from 1 to 5, got &#x27;3.5&#x27;."),
        ("i2m", "abc", "i2m must be a whole number from 1 to 5, got &#x27;abc&#x27;."),
        ("i2m", "-1", "i2m must be a whole number from 1 to 5, got &#x27;-1&#x27;."),
        ("melody", " 3", "melody must be a whole number from 1 to 5, got &#x27; 3&#x27;."),
        ("noise", "", "noise must be a whole number from 1 to 5, got &#x27;&#x27;."),
        ("noise", None, "Missing field &#x27;noise&#x27;."),
        ("pass", "3", "pass must be 1 or 2, got &#x27;3&#x27;."),
        ("pass", "1.0", "pass must be 1 or 2, got &#x27;1.0&#x27;."),
        ("rater", "   ", "Please enter a name or rater id."),
        ("rater", "x" * 65, "A rater name may have at most 64 characters, got 65."),
        ("rater", "bad\x00name", "A rater name may not contain control characters."),
    ],
)
def test_bad_ratings_are_400_with_a_clear_message(app, base, field, value, message):
    fields = {"rater": "ann", "item": some_item(app), "pass_": 1, field: value}
    if field == "pass":
        fields["pass_"] = fields.pop("pass")
    status, _, body = post_rating(base, **fields)
    assert status == 400
    assert message in body.decode()
    assert count_rows(app) == 0


def test_repeated_field_and_script_in_value_are_escaped(app, base):
    status, _, body = post_rating(base, "ann", some_item(app), 1, extra=[("i2m", "4")])
    assert status == 400 and b"Field &#x27;i2m&#x27; was given 2 times." in body
    status, _, body = post_rating(base, "ann", some_item(app), 1, melody="<script>x</script>")
    assert status == 400 and b"<script>" not in body and b"&lt;script&gt;" in body


@pytest.mark.parametrize("item", ["0123456789abcdef", "../../etc/passwd", "<script>", ""])
def test_unknown_item_is_404(app, base, item):
    status, _, body = post_rating(base, "ann", item, 1)
    assert status == 404 and b"Unknown item" in body and b"<script>" not in body
    assert count_rows(app) == 0


def test_repeated_submissions_keep_the_first_rating(app, base):
    item = some_item(app)
    assert post_rating(base, "ann", item, 1, "4", "2", "5")[0] == 303
    # the same form sent again (double click, back button): accepted, nothing changes
    status, headers, _ = post_rating(base, "ann", item, 1, "4", "2", "5")
    assert status == 303 and headers["location"] == "/rate?rater=ann"
    # different scores for the same (rater, item, pass): refused, first one kept
    status, _, body = post_rating(base, "ann", item, 1, "1", "1", "1")
    assert status == 409 and b"the first rating is kept" in body
    # the second pass of the same item is a separate rating
    assert post_rating(base, "ann", item, 2, "2", "2", "2")[0] == 303
    with sqlite3.connect(app.store.path) as con:
        rows = con.execute(
            "SELECT rater, item, model, pass, i2m, melody, noise, created_at FROM ratings "
            "ORDER BY pass"
        ).fetchall()
    assert [r[:7] for r in rows] == [
        ("ann", item, "alpha", 1, 4, 2, 5),
        ("ann", item, "alpha", 2, 2, 2, 2),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", r[7]) for r in rows)


def test_database_rejects_what_the_form_rejects(app):
    item = some_item(app)
    with sqlite3.connect(app.store.path) as con:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            con.execute(
                "INSERT INTO ratings (rater, item, model, stem, pass, i2m, melody, noise, "
                "created_at) VALUES ('a', ?, 'm', 's', 1, 6, 3, 3, 'now')",
                (item,),
            )
        con.execute(
            "INSERT INTO ratings (rater, item, model, stem, pass, i2m, melody, noise, "
            "created_at) VALUES ('a', ?, 'm', 's', 1, 3, 3, 3, 'now')",
            (item,),
        )
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            con.execute(
                "INSERT INTO ratings (rater, item, model, stem, pass, i2m, melody, noise, "
                "created_at) VALUES ('a', ?, 'm', 's', 1, 4, 4, 4, 'now')",
                (item,),
            )


def test_request_guards(app, base):
    item = some_item(app)
    cross = {"Sec-Fetch-Site": "cross-site"}
    assert post_rating(base, "ann", item, 1, headers=cross)[0] == 403
    assert post_rating(base, "ann", item, 1, headers={"Origin": "http://evil.example"})[0] == 403
    host = urlsplit(base).netloc
    same = {"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
    assert post_rating(base, "ann", item, 1, headers=same)[0] == 303
    status, _, body = request(
        base, "POST", "/rate", b'{"i2m": 3}', {"Content-Type": "application/json"}
    )
    assert status == 415 and b"application/json" in body
    big = urlencode({"rater": "x" * 5000}).encode()
    status, _, _ = request(
        base, "POST", "/rate", big, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 413
    status, headers, _ = request(base, "PUT", "/rate", b"")
    assert status == 405 and headers["allow"] == "GET, HEAD, POST"
    assert request(base, "POST", "/", b"", {"Content-Type": "text/plain"})[0] == 405
    status, _, body = request(base, "GET", "/rate?rater=%ff%fe")
    assert status == 400 and b"not valid UTF-8" in body
    assert count_rows(app) == 1


def test_host_header_guard(app):
    app.allowed_hosts = {"127.0.0.1", "localhost", "::1"}
    with app.running() as url:
        assert request(url, "GET", "/")[0] == 200
        status, _, body = request(url, "GET", "/", headers={"Host": "evil.example:8765"})
        assert status == 400 and b"Unexpected Host header" in body


# -- order and progress --------------------------------------------------------------


def test_every_item_twice_in_seeded_orders(app, base):
    n = len(app.index)
    seen = []
    for step in range(2 * n):
        item, pass_, position, total = current_step(base, "ann")
        assert (position, total) == (step + 1, 2 * n)
        assert current_step(base, "ann")[0] == item  # a reload shows the same item
        seen.append((item, pass_))
        assert post_rating(base, "ann", item, pass_)[0] == 303
    assert current_step(base, "ann") is None
    first = [i for i, p in seen if p == 1]
    second = [i for i, p in seen if p == 2]
    assert [p for _, p in seen] == [1] * n + [2] * n
    assert sorted(first) == sorted(second) == sorted(app.index)
    assert first != second and first[-1] != second[0]
    assert seen == rating_sequence(list(app.index), "ann")
    # another rater gets another order
    assert rating_sequence(list(app.index), "bob") != seen
    _, _, body = request(base, "GET", "/rate?rater=ann")
    assert f"You rated all {n} clips twice ({2 * n} ratings)" in body.decode()


def test_raters_per_item_and_items_per_rater(samples, tmp_path):
    with pytest.warns(UserWarning):
        app = make_app(samples, tmp_path / "db.sqlite3", raters_per_item=1, items_per_rater=2)
    with app.running() as base:
        given = {}
        for rater in ("ann", "bob", "cid", "dan"):
            items = set()
            while (step := current_step(base, rater)) is not None:
                items.add(step[0])
                assert post_rating(base, rater, step[0], step[1])[0] == 303
            given[rater] = items
        assert [len(given[r]) for r in ("ann", "bob", "cid", "dan")] == [2, 2, 1, 0]
        assert set().union(*given.values()) == set(app.index)
        _, _, body = request(base, "GET", "/rate?rater=dan")
        assert b"nothing left for you to rate" in body
        stranger = next(iter(given["bob"]))
        status, _, body = post_rating(base, "ann", stranger, 1)
        assert status == 409 and b"not one of the items given to you" in body
    for bad, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match=f"raters_per_item must be a positive integer, got {bad}"):
            MOSApp(app.index, app.store, raters_per_item=bad)
    with pytest.raises(TypeError, match="items_per_rater must be a positive integer, got '2'"):
        MOSApp(app.index, app.store, items_per_rater="2")


# -- summary --------------------------------------------------------------------------


def test_summary_averages_passes_first(tmp_path):
    store = RatingStore(tmp_path / "r.sqlite3")
    add = store.add
    # model m: item x rated by r (2 then 4 -> 3) and s (5, 5 -> 5); item y by r once (1)
    add("r", "x", "m", "x", 1, {"i2m": 2, "melody": 1, "noise": 5})
    add("r", "x", "m", "x", 2, {"i2m": 4, "melody": 1, "noise": 5})
    add("s", "x", "m", "x", 1, {"i2m": 5, "melody": 2, "noise": 4})
    add("s", "x", "m", "x", 2, {"i2m": 5, "melody": 4, "noise": 4})
    add("r", "y", "m", "y", 1, {"i2m": 1, "melody": 3, "noise": 5})
    # model n: a single rater-item score -> std undefined
    add("r", "z", "n", "z", 1, {"i2m": 4, "melody": 4, "noise": 4})
    add("r", "z", "n", "z", 2, {"i2m": 5, "melody": 4, "noise": 3})
    result = summary(store.path)
    m, n = result.rows
    assert m.model == "m" and n.model == "n"
    # per (rater, item): i2m 3, 5, 1; melody 1, 3, 3; noise 5, 4, 5
    assert m.mean == pytest.approx({"i2m": 3.0, "melody": 7 / 3, "noise": 14 / 3})
    assert m.std["i2m"] == pytest.approx(2.0)  # stdev([3, 5, 1]), ddof=1
    assert m.std["melody"] == pytest.approx(math.sqrt(4 / 3))
    assert (m.n_scores, m.n_items, m.n_raters, m.n_ratings, m.n_single_pass) == (3, 2, 2, 5, 1)
    assert n.mean == {"i2m": 4.5, "melody": 4.0, "noise": 3.5} and math.isnan(n.std["i2m"])
    table = str(result)
    assert table.splitlines()[0] == (
        "| model | I2M | Melody | Noise | items | raters | ratings | single-pass |"
    )
    assert "| m | 3.00 ± 2.00 | 2.33 ± 1.15 | 4.67 ± 0.58 | 2 | 2 | 5 | 1 |" in table
    assert "| n | 4.50 ± nan | 4.00 ± nan | 3.50 ± nan | 1 | 1 | 2 | 0 |" in table
    csv_lines = result.to_csv().splitlines()
    assert csv_lines[0].startswith("model,i2m_mean,i2m_std,melody_mean")
    assert csv_lines[1] == "m,3,2,2.33333,1.1547,4.66667,0.57735,2,2,5,3,1"


def test_summary_paths(samples, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        summary(samples)
    with pytest.warns(UserWarning):
        app = make_app(samples)  # default database inside the samples folder
    assert app.store.path == samples / "mos.sqlite3"
    assert "(no ratings yet" in str(summary(samples))
    bogus = tmp_path / "bogus.sqlite3"
    bogus.write_text("not a database at all, just text that is long enough " * 4)
    with pytest.raises(ValueError, match="not an SQLite database"):
        summary(bogus)
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(ValueError, match="not a conchshell ratings database"):
        summary(other)


def test_summary_after_rating_over_http_names_hostile_models(app, base):
    scores = {"alpha": ("5", "4", "3"), HOSTILE_MODEL: ("1", "2", "3")}
    while (step := current_step(base, "ann")) is not None:
        model = app.index[step[0]].model
        assert post_rating(base, "ann", step[0], step[1], *scores[model])[0] == 303
    result = summary(app.store.path)
    by_model = {r.model: r for r in result.rows}
    assert by_model["alpha"].mean == {"i2m": 5.0, "melody": 4.0, "noise": 3.0}
    assert by_model[HOSTILE_MODEL].mean == {"i2m": 1.0, "melody": 2.0, "noise": 3.0}
    assert by_model[HOSTILE_MODEL].n_ratings == 6 and by_model["alpha"].n_items == 2


# -- serve() ----------------------------------------------------------------------------


def test_serve_prints_its_url_and_stops_on_ctrl_c(samples, tmp_path):
    code = (
        "from conchshell.mos import serve; "
        f"serve({str(samples)!r}, port=0, db={str(tmp_path / 'db.sqlite3')!r})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("5 samples from 2 models")
        url = re.fullmatch(
            r"Listening test at (\S+)  \(Ctrl\+C to stop\)\n", proc.stdout.readline()
        )
        assert url and url[1].startswith("http://127.0.0.1:")
        assert request(url[1], "GET", "/")[0] == 200
        # bound to loopback: a request naming another host is refused (DNS rebinding)
        assert request(url[1], "GET", "/", headers={"Host": "evil.example"})[0] == 400
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert out == "Stopped.\n"
    finally:
        proc.kill()
        proc.wait()


def test_serve_reports_a_taken_port(samples, tmp_path):
    with pytest.warns(UserWarning):
        app = make_app(samples, tmp_path / "db.sqlite3")
    with app.running() as url:
        port = urlsplit(url).port
        with (
            pytest.warns(UserWarning),
            pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"),
        ):
            serve(samples, port=port, db=tmp_path / "db.sqlite3")
