"""The HTML of the listening test.

Every value that comes from outside (rater names, messages that quote user
input) goes through :func:`html.escape`; file and model names never reach a
page at all, so raters stay blind to which model made a clip. The pages use no
JavaScript, which lets the Content-Security-Policy forbid scripts outright.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

__all__ = ["CSS", "METRIC_HELP", "done_page", "error_page", "rate_page", "start_page"]

#: Per metric: title, what to listen for, and what the two ends of the scale mean.
METRIC_HELP: dict[str, tuple[str, str, str, str]] = {
    "i2m": (
        "Image-music relevance (I2M)",
        "Does the music suit the picture: its mood, its scene, its colours?",
        "has nothing to do with the picture",
        "expresses the picture fully",
    ),
    "melody": (
        "Melody",
        "Leave the picture aside: does the music have a melodic line a listener would "
        "accept, with a shape that unfolds over time?",
        "one note repeated, or notes with no pattern",
        "a clear, well-formed melody",
    ),
    "noise": (
        "Noise",
        "How much hiss, crackle or other background noise do you hear besides the piano?",
        "noise almost drowns the music",
        "no noise at all",
    ),
}

CSS = """
:root { color-scheme: light dark; --accent: #2c6e91; --muted: #666; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 46rem;
       padding: 1rem 1.25rem 3rem; }
header { display: flex; justify-content: space-between; align-items: baseline;
         gap: 1rem; flex-wrap: wrap; border-bottom: 1px solid #8884; margin-bottom: 1rem; }
h1 { font-size: 1.3rem; margin: .5rem 0; }
.progress { color: var(--muted); font-size: .95rem; }
progress { width: 100%; height: .6rem; accent-color: var(--accent); }
figure { margin: 0 0 .75rem; text-align: center; }
/* Same display size for every picture, small ones scaled up, none cropped. */
figure img { width: 100%; max-width: 30rem; height: auto; max-height: min(45vh, 22rem);
             object-fit: contain; border-radius: 6px; }
audio { width: 100%; margin-bottom: 1rem; }
fieldset { border: 1px solid #8885; border-radius: 6px; margin: 0 0 .9rem;
           padding: .5rem .9rem .7rem; }
legend { font-weight: 600; padding: 0 .3rem; }
.help { margin: 0 0 .4rem; color: var(--muted); font-size: .92rem; }
.scale { display: flex; align-items: center; gap: .4rem; flex-wrap: wrap; }
.scale .end { font-size: .82rem; color: var(--muted); flex: 1 1 8rem; }
.scale .end.right { text-align: right; }
.scale .choices { display: inline-flex; flex: 0 0 auto; }
.scale label { display: inline-flex; flex-direction: column; align-items: center;
               min-width: 2.4rem; padding: .2rem .3rem; border-radius: 4px; cursor: pointer; }
.scale label:hover { background: #8882; }
button, input[type=text] { font: inherit; padding: .45rem .8rem; border-radius: 6px; }
button { background: var(--accent); color: #fff; border: 0; cursor: pointer; }
input[type=text] { border: 1px solid #8888; width: min(20rem, 100%); }
.error { border-left: 4px solid #c0392b; padding: .3rem .8rem; }
"""


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        '<link rel="stylesheet" href="/style.css"></head>'
        f"<body>{body}</body></html>\n"
    ).encode()


def rate_url(rater: str) -> str:
    """The URL of a rater's next item (the name percent-encoded)."""
    return "/rate?rater=" + quote(rater, safe="")


def start_page(n_items: int) -> bytes:
    """The welcome page: what the test is, and a field for the rater's name.

    Parameters
    ----------
    n_items : int
        How many clips the test has.

    Returns
    -------
    bytes
        The UTF-8 HTML page.
    """
    n = n_items
    body = f"""
<header><h1>Listening test: music for pictures</h1></header>
<p>You will see a picture and hear an 8-second piano clip made for it, then give three
scores from 1 (worst) to 5 (best). There are up to {n} clips; each comes back once
more, in a new order, so you rate every clip twice. Please use headphones and stay in a
quiet room. You can close the page and come back later with the same name.</p>
<ul>
""" + "".join(
        f"<li><strong>{escape(t)}</strong>: {escape(h)}</li>" for t, h, _, _ in METRIC_HELP.values()
    )
    body += """</ul>
<form method="get" action="/rate">
<label for="rater">Your name or rater id</label><br>
<input type="text" id="rater" name="rater" required maxlength="64" autocomplete="off" autofocus>
<button type="submit" id="start">Start</button>
</form>
"""
    return _page("Listening test", body)


def rate_page(rater: str, item: str, pass_: int, position: int, total: int) -> bytes:
    """One item: the picture, the clip and the three rating scales.

    Parameters
    ----------
    rater : str
        The rater's name, carried in a hidden field.
    item : str
        The clip's name; the page loads ``/image/<item>`` and ``/audio/<item>``.
    pass_ : int
        1 or 2: which of the two passes this is.
    position, total : int
        Where this clip is in the rater's sequence (from 1) and its length.

    Returns
    -------
    bytes
        The UTF-8 HTML page, with a form that posts to ``/rate``.
    """
    scales = []
    for key, (title, helptext, low, high) in METRIC_HELP.items():
        radios = "".join(
            f'<label for="{key}-{v}"><input type="radio" id="{key}-{v}" name="{key}" '
            f'value="{v}" required>{v}</label>'
            for v in range(1, 6)
        )
        scales.append(
            f'<fieldset><legend>{escape(title)}</legend><p class="help">{escape(helptext)}</p>'
            f'<div class="scale"><span class="end">1 = {escape(low)}</span>'
            f'<span class="choices">{radios}</span>'
            f'<span class="end right">5 = {escape(high)}</span></div></fieldset>'
        )
    item = escape(item)
    body = f"""
<header><h1>Listening test</h1>
<span class="progress" id="progress">Rater {escape(rater)} &middot; clip {position} of {total}
&middot; pass {pass_} of 2</span>
<progress value="{position - 1}" max="{total}"></progress></header>
<figure><img id="picture" src="/image/{item}" alt="The picture this clip was made for"></figure>
<audio id="clip" controls preload="auto" src="/audio/{item}"></audio>
<form method="post" action="/rate" id="rating">
<input type="hidden" name="rater" value="{escape(rater)}">
<input type="hidden" name="item" value="{item}">
<input type="hidden" name="pass" value="{pass_}">
{"".join(scales)}
<button type="submit" id="submit">Save and go on</button>
</form>
"""
    return _page(f"Listening test: clip {position} of {total}", body)


def done_page(rater: str, n_ratings: int, n_items: int) -> bytes:
    """The page shown once a rater has rated every item twice.

    Parameters
    ----------
    rater : str
        The rater's name, shown escaped.
    n_ratings : int
        How many ratings the rater gave.
    n_items : int
        How many clips the test has; 0 shows a "nothing left to rate" note.

    Returns
    -------
    bytes
        The UTF-8 HTML page.
    """
    if n_items == 0:
        text = (
            "Every clip already has enough raters, so there is nothing left for you to rate. "
            "Thank you for offering."
        )
    else:
        text = (
            f"You rated all {n_items} clips twice ({n_ratings} ratings). "
            "Your answers are saved; you can close this page."
        )
    body = (
        f'<header><h1 id="done">Thank you, {escape(rater)}!</h1></header>'
        f"<p>{escape(text)}</p><progress value=1 max=1></progress>"
    )
    return _page("Listening test: done", body)


def error_page(status: str, message: str, back: str | None = None) -> bytes:
    """An error page that quotes ``message`` safely and links back.

    Parameters
    ----------
    status : str
        The HTTP status line, e.g. ``"404 Not Found"``; used as the heading.
    message : str
        What went wrong.
    back : str, optional
        URL of the "Go back" link; no link when ``None``.

    Returns
    -------
    bytes
        The UTF-8 HTML page.
    """
    link = f'<p><a href="{escape(back)}">Go back to the test</a></p>' if back else ""
    body = (
        f"<header><h1>{escape(status)}</h1></header>"
        f'<p class="error" id="message">{escape(message)}</p>{link}'
    )
    return _page(status, body)
