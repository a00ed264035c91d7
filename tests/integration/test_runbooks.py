"""The runbooks page over real HTTP (Router + MetricsServer on 127.0.0.1), and its build from docs/runbooks.md."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest
import yaml

from exporter.app import Exporter
from exporter.demo.server import SimulatedAws
from exporter.http import SECURITY_HEADERS, MetricsServer, Router
from exporter.runbooks import RunbooksPage, split_styles
from exporter.snapshot import Store

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-runbooks"
PAGE_FILE = ROOT / "exporter" / "assets" / "runbooks.html"
RULES_FILE = ROOT / "deploy" / "prometheus" / "bedrock-batch.rules.yaml"


class PageParts(HTMLParser):
    """Every element id, every href/src, and the tags and attributes a CSP-restricted page must not carry."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.references: list[str] = []
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            self.attributes.add(name)
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value is not None:
                self.references.append(value)


def parts(page: str) -> PageParts:
    parser = PageParts()
    parser.feed(page)
    parser.close()
    return parser


def build_module() -> ModuleType:
    """scripts/build-runbooks as a module (it has no .py suffix, being a command)."""
    loader = importlib.machinery.SourceFileLoader("build_runbooks", str(BUILD_SCRIPT))
    spec = importlib.util.spec_from_loader("build_runbooks", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_runbooks"] = module  # dataclasses look their module up here
    loader.exec_module(module)
    return module


def alert_fragments() -> dict[str, str]:
    """Alert name -> the #fragment of its runbook_url in the shipped rules."""
    found = {}
    for group in yaml.safe_load(RULES_FILE.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                found[rule["alert"]] = urlsplit(rule["annotations"]["runbook_url"]).fragment
    return found


@pytest.fixture(scope="module")
def server() -> Iterator[MetricsServer]:
    srv = MetricsServer(("127.0.0.1", 0), Router(Store(clock=lambda: 0.0), None, pages=(RunbooksPage(),)))
    srv.start()
    yield srv
    srv.stop()


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def test_runbooks_page_is_served_with_the_exporter_headers(server: MetricsServer) -> None:
    status, headers, body = fetch(server.url + "/runbooks")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value, name
    page = body.decode()
    found = parts(page)
    # Every alert's runbook_url fragment is an id on the page.
    fragments = alert_fragments()
    assert len(fragments) >= 12
    for alert, fragment in fragments.items():
        assert fragment and fragment in found.ids, f"{alert}: #{fragment} is not on /runbooks"
    # Nothing the CSP (default-src 'none'; style-src 'self') would block: no inline style or script, and the only
    # reference that leaves the page is its own stylesheet.
    assert "style" not in found.tags and "script" not in found.tags and "style" not in found.attributes
    assert not any(a.startswith("on") for a in found.attributes)
    assert [r for r in found.references if not r.startswith("#")] == ["runbooks.css"]
    assert status == fetch(server.url + "/runbooks?from=alertmanager")[0]


def test_stylesheet_is_the_pages_own_inline_style(server: MetricsServer) -> None:
    status, headers, body = fetch(server.url + "/runbooks.css")
    assert status == 200 and headers["Content-Type"] == "text/css; charset=utf-8"
    committed = PAGE_FILE.read_text(encoding="utf-8")
    assert body.decode() == split_styles(committed)[1]
    assert "main {" in body.decode() and "<" not in body.decode()
    # The committed file, hosted anywhere else, needs no other file: its style is inline, nothing is referenced.
    standalone = parts(committed)
    assert "style" in standalone.tags and all(r.startswith("#") for r in standalone.references)


def test_other_paths_and_methods(server: MetricsServer) -> None:
    status, _, body = fetch(server.url + "/runbooks", method="HEAD")
    assert status == 200 and body == b""
    assert fetch(server.url + "/runbooks", method="POST")[0] == 405
    for path in ("/runbooks/", "/runbooks.html", "/runbooks/../metrics", "/runbooksx"):
        assert fetch(server.url + path)[0] == 404, path
    page = RunbooksPage(page="<html><head><style>x{}</style></head></html>")
    assert page.respond("/") is None and page.respond("/static/status.css") is None
    answer = page.respond("/runbooks.css")
    assert answer is not None and answer.body == b"x{}"


def test_committed_page_is_a_fresh_render_of_the_markdown() -> None:
    build = build_module()
    assert PAGE_FILE.read_text(encoding="utf-8") == build.render((ROOT / "docs" / "runbooks.md").read_text())
    result = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_renderer_escapes_and_refuses_what_it_does_not_know() -> None:
    build = build_module()
    page = build.render(
        "# T\n\n## Alert <One>\n\nA `<b>` & **bold `x`** *em* [ext](https://e.example/a?b=1&c) [rel](x.md)\n"
    )
    assert '<h2 id="alert-one">Alert &lt;One&gt;</h2>' in page
    assert "<code>&lt;b&gt;</code> &amp; <strong>bold <code>x</code></strong> <em>em</em>" in page
    assert '<a href="https://e.example/a?b=1&amp;c">ext</a> rel</p>' in page
    for bad in ("# T\n\n- a list\n", "# T\n\n| a | table |\n", "# T\n\n```\ncode\n```\n", "# T\n\n### deep\n"):
        with pytest.raises(build.MarkdownError, match="line"):
            build.render(bad)
    with pytest.raises(build.MarkdownError, match="anchor"):
        build.render("# T\n\n## Same\n\n## same\n")


def test_the_exporter_serves_the_runbooks_and_links_them_from_its_page(
    fresh_aws: SimulatedAws, exporters: list[Exporter]
) -> None:
    from tests.conftest import fast_config, start_exporter

    _, url = start_exporter(exporters, fast_config(fresh_aws.url))
    with urllib.request.urlopen(url + "/runbooks", timeout=5) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
        assert response.headers["X-Frame-Options"] == "DENY"
        assert 'id="bedrockbatchbacklogstalled"' in response.read().decode()
    with urllib.request.urlopen(url + "/", timeout=5) as response:
        assert 'href="runbooks"' in response.read().decode()
