"""The listening-test web app: a small WSGI application on the standard library.

Routes
------
``GET /``
    Welcome page with a field for the rater's name.
``GET /rate?rater=NAME``
    The rater's next (item, pass), or the done page.
``POST /rate``
    Form fields ``rater``, ``item``, ``pass`` (1 or 2), ``i2m``, ``melody``,
    ``noise`` (whole numbers 1-5). Answers ``303`` to the next item;
    ``400`` for a malformed field, ``404`` for an unknown item, ``409`` for an
    item not assigned to the rater or a second, different rating of the same
    (rater, item, pass) (the first one is kept; resending identical scores is
    accepted and changes nothing), ``403`` for a cross-site post.
``GET /audio/ID``, ``GET /image/ID``
    The clip and the picture of one item, looked up in the start-up index
    (single byte ranges supported for the audio player).
``GET /style.css``
    The stylesheet.
"""

from __future__ import annotations

import re
import socket
import threading
import unicodedata
import webbrowser
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from conchshell._validation import check_positive_int
from conchshell.mos import pages
from conchshell.mos.samples import AUDIO_SUFFIXES, SampleIndex, scan_samples
from conchshell.mos.store import (
    DEFAULT_DB_NAME,
    METRICS,
    PASSES,
    MOSSummary,
    RatingStore,
    rating_sequence,
    summarize,
)

__all__ = ["MAX_RATER_LENGTH", "MOSApp", "make_app", "serve", "summary"]

#: Longest rater name accepted, in characters.
MAX_RATER_LENGTH = 64
_MAX_BODY = 4096
_ID = re.compile(r"[0-9a-f]{16}")
_MEDIA = re.compile(r"/(audio|image)/([^/]*)")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# No scripts at all; media, pictures and styles only from this server; forms
# post only here; the pages may not be framed.
_SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    # same-origin (not no-referrer): with no-referrer browsers send "Origin: null"
    # on form posts, and the cross-site check below needs the real origin.
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class HTTPError(Exception):
    """An error answered with its status and an HTML page quoting the message."""

    def __init__(self, status: int, message: str, back: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.back = back


_REASONS = {
    200: "OK",
    206: "Partial Content",
    303: "See Other",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
}


def _status(code: int) -> str:
    return f"{code} {_REASONS[code]}"


def check_rater(value: str) -> str:
    """Validate a rater name: 1-64 printable characters once trimmed.

    Raises
    ------
    HTTPError
        400, naming the problem.
    """
    rater = value.strip()
    if not rater:
        raise HTTPError(400, "Please enter a name or rater id.", "/")
    if len(rater) > MAX_RATER_LENGTH:
        raise HTTPError(
            400,
            f"A rater name may have at most {MAX_RATER_LENGTH} characters, got {len(rater)}.",
            "/",
        )
    if any(unicodedata.category(c).startswith("C") for c in rater):
        raise HTTPError(400, "A rater name may not contain control characters.", "/")
    return rater


def check_score(name: str, value: str) -> int:
    """Validate one score: a whole number from 1 to 5.

    Raises
    ------
    HTTPError
        400 with a message naming the field and the value received.
    """
    if not re.fullmatch(r"[0-9]+", value):
        raise HTTPError(400, f"{name} must be a whole number from 1 to 5, got {value!r}.")
    score = int(value)
    if not 1 <= score <= 5:
        raise HTTPError(400, f"{name} must be between 1 and 5, got {score}.")
    return score


class MOSApp:
    """The listening test as a WSGI application.

    Parameters
    ----------
    index : SampleIndex
        What to serve (see :func:`~conchshell.mos.samples.scan_samples`).
    store : RatingStore
        Where the ratings go.
    raters_per_item : int or None, default=None
        Stop handing an item to new raters once this many have it; ``None``
        gives every rater every item (the paper's design).
    items_per_rater : int or None, default=None
        Give each rater at most this many items (the least-rated first).
    allowed_hosts : set of str or None, default=None
        Host names the ``Host`` header may carry (a guard against DNS
        rebinding when bound to loopback); ``None`` accepts any.

    Examples
    --------
    >>> app = make_app("samples")  # doctest: +SKIP
    >>> with app.running() as url:  # doctest: +SKIP
    ...     print(url)
    http://127.0.0.1:40123/
    """

    def __init__(
        self,
        index: SampleIndex,
        store: RatingStore,
        *,
        raters_per_item: int | None = None,
        items_per_rater: int | None = None,
        allowed_hosts: set[str] | None = None,
    ) -> None:
        for name, value in (
            ("raters_per_item", raters_per_item),
            ("items_per_rater", items_per_rater),
        ):
            if value is not None:
                check_positive_int(value, name)
        self.index = index
        self.store = store
        self.raters_per_item = raters_per_item
        self.items_per_rater = items_per_rater
        self.allowed_hosts = allowed_hosts

    # -- WSGI ---------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            self._check_host(environ)
            status, headers, body = self._route(method, environ)
        except HTTPError as err:
            status = err.status
            headers = [("Content-Type", "text/html; charset=utf-8")]
            if status == 405:
                headers.append(
                    ("Allow", "GET, HEAD" if environ["PATH_INFO"] != "/rate" else "GET, HEAD, POST")
                )
            body = pages.error_page(_status(status), err.message, err.back)
        headers = [*headers, *_SECURITY_HEADERS, ("Content-Length", str(len(body)))]
        if not any(k == "Cache-Control" for k, _ in headers):
            headers.append(("Cache-Control", "no-store"))
        start_response(_status(status), headers)
        return [b""] if method == "HEAD" else [body]

    def _check_host(self, environ: dict[str, Any]) -> None:
        if self.allowed_hosts is None:
            return
        host = environ.get("HTTP_HOST", "")
        name = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]
        if name not in self.allowed_hosts:
            raise HTTPError(400, f"Unexpected Host header {host!r}.")

    def _route(self, method: str, environ: dict[str, Any]) -> tuple[int, list, bytes]:
        path = environ.get("PATH_INFO", "")
        if method not in ("GET", "HEAD", "POST"):
            raise HTTPError(405, f"Method {method} is not allowed here.")
        if path == "/rate" and method == "POST":
            return self._post_rating(environ)
        if method == "POST":
            raise HTTPError(405, f"POST is not allowed on {path!r}.")
        if path == "/":
            return (
                200,
                [("Content-Type", "text/html; charset=utf-8")],
                pages.start_page(len(self.index)),
            )
        if path == "/rate":
            return self._get_rating(environ)
        if path == "/style.css":
            return 200, [("Content-Type", "text/css; charset=utf-8")], pages.CSS.encode()
        media = _MEDIA.fullmatch(path)
        if media:
            return self._media(media[1], media[2], environ)
        raise HTTPError(404, f"There is no page {path!r}.", "/")

    # -- pages ----------------------------------------------------------------

    def _assigned(self, rater: str) -> list[str]:
        return self.store.assign(
            rater,
            list(self.index),
            raters_per_item=self.raters_per_item,
            items_per_rater=self.items_per_rater,
        )

    def _get_rating(self, environ: dict[str, Any]) -> tuple[int, list, bytes]:
        fields = _parse_form(environ.get("QUERY_STRING", ""))
        rater = check_rater(_one(fields, "rater"))
        items = self._assigned(rater)
        sequence = rating_sequence(items, rater)
        done = self.store.done(rater)
        todo = [step for step in sequence if step not in done]
        html = [("Content-Type", "text/html; charset=utf-8")]
        if not todo:
            return 200, html, pages.done_page(rater, len(sequence), len(items))
        item, pass_ = todo[0]
        position = len(sequence) - len(todo) + 1
        return 200, html, pages.rate_page(rater, item, pass_, position, len(sequence))

    def _post_rating(self, environ: dict[str, Any]) -> tuple[int, list, bytes]:
        _check_same_origin(environ)
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise HTTPError(
                415, f"Expected a form (application/x-www-form-urlencoded), got {ctype!r}."
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise HTTPError(400, "Bad Content-Length.") from None
        if length > _MAX_BODY:
            raise HTTPError(413, f"The form is {length} bytes; at most {_MAX_BODY} are accepted.")
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, "The form is not valid UTF-8.") from None
        fields = _parse_form(text)
        rater = check_rater(_one(fields, "rater"))
        back = pages.rate_url(rater)
        item_id = _one(fields, "item")
        sample = self.index.get(item_id) if _ID.fullmatch(item_id) else None
        if sample is None:
            raise HTTPError(404, f"Unknown item {item_id!r}.", back)
        pass_text = _one(fields, "pass")
        if pass_text not in {str(p) for p in PASSES}:
            raise HTTPError(400, f"pass must be 1 or 2, got {pass_text!r}.", back)
        try:
            scores = {m: check_score(m, _one(fields, m)) for m in METRICS}
        except HTTPError as err:
            err.back = back
            raise
        if item_id not in self._assigned(rater):
            raise HTTPError(409, f"Item {item_id!r} is not one of the items given to you.", back)
        outcome = self.store.add(rater, item_id, sample.model, sample.stem, int(pass_text), scores)
        if outcome == "conflict":
            raise HTTPError(
                409,
                f"You already rated this clip in pass {pass_text} with other scores; "
                "the first rating is kept.",
                back,
            )
        return 303, [("Location", back), ("Content-Type", "text/plain")], b"See Other\n"

    def _media(self, kind: str, item_id: str, environ: dict[str, Any]) -> tuple[int, list, bytes]:
        sample = self.index.get(item_id) if _ID.fullmatch(item_id) else None
        if sample is None:
            raise HTTPError(404, f"Unknown {kind} {item_id!r}.")
        path = sample.audio if kind == "audio" else sample.image
        ctype = AUDIO_SUFFIXES[".wav"] if kind == "audio" else sample.image_type
        try:
            data = path.read_bytes()
        except OSError:
            raise HTTPError(
                404, f"The {kind} file of item {item_id!r} is no longer on disk."
            ) from None
        headers = [
            ("Content-Type", ctype),
            ("Accept-Ranges", "bytes"),
            ("Cache-Control", "private, max-age=300"),
        ]
        span = _byte_range(environ.get("HTTP_RANGE"), len(data))
        if span is None:
            return 200, headers, data
        start, stop = span
        headers.append(("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}"))
        return 206, headers, data[start:stop]

    # -- serving ----------------------------------------------------------------

    def make_server(
        self, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True
    ) -> WSGIServer:
        """A threaded HTTP server for this app, bound but not yet serving.

        Parameters
        ----------
        host : str, default="127.0.0.1"
            Address to bind; IPv6 addresses work too.
        port : int, default=0
            Port; 0 picks a free one (read it from ``server.server_port``).
        quiet : bool, default=True
            Leave out the per-request log lines.
        """
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        handler = _QuietHandler if quiet else WSGIRequestHandler
        return make_server(host, port, self, server_class=server_class, handler_class=handler)

    @contextmanager
    def running(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve in a background thread for the duration of a ``with`` block.

        Parameters
        ----------
        host : str, default "127.0.0.1"
            Address to listen on.
        port : int, default 0
            Port to listen on; 0 picks a free one.

        Yields
        ------
        str
            The base URL, e.g. ``"http://127.0.0.1:40123/"``.
        """
        server = self.make_server(host, port)
        # A short poll interval makes shutdown (which waits for one poll) quick.
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield _url(host, server.server_port)
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _parse_form(text: str) -> dict[str, list[str]]:
    try:
        return parse_qs(text, keep_blank_values=True, errors="strict", max_num_fields=32)
    except UnicodeDecodeError:
        raise HTTPError(400, "The request is not valid UTF-8.") from None
    except ValueError as exc:  # too many fields
        raise HTTPError(400, f"Malformed form: {exc}.") from None


def _one(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name)
    if not values:
        raise HTTPError(400, f"Missing field {name!r}.")
    if len(values) > 1:
        raise HTTPError(400, f"Field {name!r} was given {len(values)} times.")
    return values[0]


def _check_same_origin(environ: dict[str, Any]) -> None:
    # A page on another site must not be able to post ratings to this server.
    site = environ.get("HTTP_SEC_FETCH_SITE")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise HTTPError(403, f"Cross-site form posts are refused (Sec-Fetch-Site: {site}).")
        return
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None and origin != f"http://{environ.get('HTTP_HOST', '')}":
        raise HTTPError(403, f"Form posts from {origin!r} are refused.")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, stop)`` for a single ``bytes=`` range, ``None`` to send everything."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:  # several ranges or another unit: the whole file is a valid answer
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        start, stop = max(0, size - int(last)), size
    else:
        start = int(first)
        stop = min(size, int(last) + 1) if last else size
    if start >= size or start >= stop:
        raise HTTPError(416, f"Range {header!r} is outside the {size}-byte file.")
    return start, stop


# -- entry points -------------------------------------------------------------


def _db_path(samples_dir: Path, db: str | Path | None) -> Path:
    return samples_dir / DEFAULT_DB_NAME if db is None else Path(db)


def make_app(
    samples_dir: str | Path,
    db: str | Path | None = None,
    *,
    raters_per_item: int | None = None,
    items_per_rater: int | None = None,
    allowed_hosts: set[str] | None = None,
) -> MOSApp:
    """Index a samples folder and open (or create) the ratings database.

    Parameters
    ----------
    samples_dir : str or path-like
        See :func:`~conchshell.mos.samples.scan_samples`; unpaired files are
        counted in a warning and not served.
    db : str or path-like, optional
        The SQLite file; default ``SAMPLES_DIR/mos.sqlite3``.
    raters_per_item, items_per_rater, allowed_hosts
        See :class:`MOSApp`.

    Returns
    -------
    MOSApp
        A WSGI application; ``app.running()`` serves it on a free port in a
        thread, ``app.make_server(host, port)`` returns the server.
    """
    index = scan_samples(samples_dir)
    store = RatingStore(_db_path(Path(samples_dir), db))
    return MOSApp(
        index,
        store,
        raters_per_item=raters_per_item,
        items_per_rater=items_per_rater,
        allowed_hosts=allowed_hosts,
    )


def serve(
    samples_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    db: str | Path | None = None,
    raters_per_item: int | None = None,
    items_per_rater: int | None = None,
    open_browser: bool = False,
    quiet: bool = True,
) -> None:
    """Run the listening test until interrupted (Ctrl+C).

    Parameters
    ----------
    samples_dir : str or path-like
        ``SAMPLES_DIR/<model>/<item>.wav`` with ``<item>.png`` or ``.jpg`` beside it.
    host : str, default="127.0.0.1"
        Address to bind. On a loopback address only loopback ``Host`` headers
        are answered; bind ``0.0.0.0`` to let other machines in.
    port : int, default=8765
        Port (0 picks a free one).
    db : str or path-like, optional
        Ratings database; default ``SAMPLES_DIR/mos.sqlite3``.
    raters_per_item, items_per_rater : int, optional
        See :class:`MOSApp`; by default every rater rates every item twice.
    open_browser : bool, default=False
        Open the page in the default browser once serving.
    quiet : bool, default=True
        Leave out per-request log lines.

    Raises
    ------
    OSError
        When the address cannot be bound (the port is taken, for example).
    """
    app = make_app(
        samples_dir,
        db,
        raters_per_item=raters_per_item,
        items_per_rater=items_per_rater,
        allowed_hosts=set(_LOOPBACK) if host in _LOOPBACK else None,
    )
    try:
        server = app.make_server(host, port, quiet=quiet)
    except OSError as exc:  # port taken, address not on this machine...
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    url = _url(host, server.server_port)
    print(f"{app.index.describe()}; ratings go to {app.store.path}")
    print(f"Listening test at {url}  (Ctrl+C to stop)", flush=True)
    if open_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.")
    finally:
        server.server_close()


def summary(db_or_samples_dir: str | Path) -> MOSSummary:
    """Mean ± std of I2M, Melody and Noise per model.

    Parameters
    ----------
    db_or_samples_dir : str or path-like
        The ratings database, or the samples folder whose default database
        (``mos.sqlite3``) to read.

    Returns
    -------
    MOSSummary
        Print it for a markdown table; ``.to_csv()`` for CSV; ``.rows`` for the
        numbers. Each rater's two passes over an item are averaged first, then
        mean and sample std are taken over the (rater, item) scores of a model.

    Raises
    ------
    FileNotFoundError
        When there is no database there.
    """
    path = Path(db_or_samples_dir)
    if path.is_dir():
        path = path / DEFAULT_DB_NAME
    return summarize(RatingStore(path, create=False))
