"""A listening test for generated music: mean opinion scores (MOS).

Raters see each picture with the clip generated for it and score it from 1
to 5 on the paper's three scales: image-music relevance (I2M), Melody and
Noise. Every rater rates every item twice, each pass in its own random
order (seeded by the rater's name, so a reload shows the same item). Ratings
go to SQLite; :func:`summary` averages each rater's two passes, then reports
mean ± std per model.

Examples
--------
>>> from conchshell import mos
>>> mos.serve("samples")  # doctest: +SKIP
Listening test at http://127.0.0.1:8765/  (Ctrl+C to stop)
>>> print(mos.summary("samples"))  # doctest: +SKIP
| model | I2M | Melody | Noise | items | raters | ratings | single-pass |
...
"""

from conchshell.mos.app import MOSApp, make_app, serve, summary
from conchshell.mos.samples import Sample, SampleIndex, scan_samples
from conchshell.mos.store import METRICS, MOSRow, MOSSummary, RatingStore

__all__ = [
    "METRICS",
    "MOSApp",
    "MOSRow",
    "MOSSummary",
    "RatingStore",
    "Sample",
    "SampleIndex",
    "make_app",
    "scan_samples",
    "serve",
    "summary",
]
