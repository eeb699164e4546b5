"""BokehJS, served by this app from the installed bokeh package: pages work with no internet."""

from __future__ import annotations

from pathlib import Path

import bokeh
from bokeh.util.paths import bokehjs_path
from flask import Blueprint, Response, send_from_directory, url_for

bp = Blueprint("bokeh", __name__, url_prefix="/bokeh")

#: The only BokehJS bundle the chart needs (no widgets, tables, WebGL or MathJax).
BOKEH_BUNDLES = ("bokeh.min.js",)
#: Bundle URLs carry bokeh's version, so browsers may keep them for a day.
CACHE_MAX_AGE_S = 86_400


@bp.get("/static/js/<path:filename>")
def bokeh_js(filename: str) -> Response:
    directory = Path(bokehjs_path()) / "js"
    return send_from_directory(directory, filename, max_age=CACHE_MAX_AGE_S)


def bokeh_script_urls() -> list[str]:
    """URLs of the BokehJS bundles on this app, for ``<script src>``."""
    return [url_for("bokeh.bokeh_js", filename=name, v=bokeh.__version__) for name in BOKEH_BUNDLES]
