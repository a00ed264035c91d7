"""The alerts' runbooks at `/runbooks`: the page scripts/build-runbooks renders from docs/runbooks.md.

The committed page carries its stylesheet inline, so it works wherever a team hosts it. The exporter's
Content-Security-Policy forbids inline styles, so here the same stylesheet is served as `/runbooks.css` and linked.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

from exporter.http import Response

log = logging.getLogger(__name__)

PAGE_PATH = "/runbooks"
CSS_PATH = "/runbooks.css"
_HTML = "text/html; charset=utf-8"
_CSS = "text/css; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)
# Relative, so the link also resolves behind a reverse proxy that serves the exporter under a path prefix.
_LINK = '<link rel="stylesheet" href="runbooks.css">'


def split_styles(page: str) -> tuple[str, str]:
    """The page with its inline <style> replaced by a link to runbooks.css, and that stylesheet."""
    match = _STYLE.search(page)
    if match is None:
        return page, ""
    return page[: match.start()] + _LINK + page[match.end() :], match.group(1).lstrip()


class RunbooksPage:
    """Answers GET `/runbooks` and `/runbooks.css`; None for every other path (a `Router` page source)."""

    def __init__(self, page: str | None = None) -> None:
        if page is None:
            page = _packaged_page()
        if page is None:
            missing = Response(404, b"the runbooks page is not packaged with this build; see docs/runbooks.md\n", _TEXT)
            self._answers = {PAGE_PATH: missing, CSS_PATH: missing}
            return
        body, css = split_styles(page)
        headers = {"Cache-Control": "no-cache"}
        self._answers = {
            PAGE_PATH: Response(200, body.encode(), _HTML, headers),
            CSS_PATH: Response(200, css.encode(), _CSS, headers),
        }

    def respond(self, target: str) -> Response | None:
        return self._answers.get(target.split("?", 1)[0])


def _packaged_page() -> str | None:
    try:
        return resources.files("exporter").joinpath("assets", "runbooks.html").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # a broken install must not stop the exporter, only this page
        log.error("runbooks page unavailable (%s); /runbooks answers 404", exc)
        return None
