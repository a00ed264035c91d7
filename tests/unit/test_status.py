from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from exporter.http import SECURITY_HEADERS, MetricsServer, Router
from exporter.model import CloudWatchValue, Job, SeriesKey, TaskKey, TaskState
from exporter.selfmetrics import SelfMetrics
from exporter.sinks.prometheus import Exposition
from exporter.sinks.status import DEFAULT_LIMIT, StatusPage, build_status, render_html
from exporter.snapshot import Store

NOW = 1_800_000_000.0
BATCH = "AWS/Bedrock/Batch"
EVIL = "<script>alert(1)</script>"
EVIL_ATTR = '"><img src=x onerror=alert(2)>'


def cw(model: str, stat: str, value: float, stamp: float | None = None) -> CloudWatchValue:
    series = SeriesKey.of(BATCH, "NumberOfRecordsPendingProcessing", {"ModelId": model})
    return CloudWatchValue(series, stat, value, stamp, NOW - 30)


def job(name: str, model: str, status: str, total: float | None = 1000, processed: float = 400, **kw: Any) -> Job:
    values: dict[str, Any] = {
        "arn": f"arn:aws:bedrock:us-east-1:111122223333:model-invocation-job/{name}",
        "name": name,
        "model_id": model,
        "status": status,
        "invocation_type": "InvokeModel",
        "submit_time": NOW - 600,
        "end_time": None,
        "expiration_time": NOW + 3600,
        "total_records": total,
        "processed_records": processed,
        "succeeded_records": processed - 10,
        "failed_records": 10.0,
    }
    values.update(kw)
    return Job(**values)


def east_metrics() -> TaskState:
    samples = (
        cw("amazon.nova-pro-v1:0", "Maximum", 1234.0),
        cw("amazon.nova-pro-v1:0", "Average", 1000.5),
        cw(EVIL, "Maximum", math.nan, stamp=NOW - 90),
    )
    return TaskState(
        key=TaskKey("prod", "us-east-1", BATCH),
        account_id="111122223333",
        values=samples,
        up=True,
        last_attempt=NOW - 30,
        last_success=NOW - 30,
        newest_datapoint=NOW - 90,
        last_error="old failure",
        last_error_time=NOW - 3000,
    )


def east_jobs() -> TaskState:
    jobs = [
        job("running-soon", "amazon.nova-pro-v1:0", "InProgress", expiration_time=NOW + 60),
        job(EVIL_ATTR, EVIL, "Scheduled", total=None, processed=0),
        job("done", "amazon.nova-pro-v1:0", "Completed", processed=1000, end_time=NOW - 120),
    ]
    return TaskState(
        key=TaskKey("prod", "us-east-1", "bedrock:jobs"),
        account_id="111122223333",
        jobs=tuple(jobs),
        up=True,
        last_attempt=NOW - 20,
        last_success=NOW - 20,
    )


def west_down() -> TaskState:
    state = TaskState(
        key=TaskKey("prod", "us-west-2", BATCH),
        account_id="111122223333",
        values=(cw("amazon.titan-embed-text-v2:0", "Maximum", 5.0),),
        up=True,
        last_attempt=NOW - 400,
        last_success=NOW - 400,
    )
    return state.failed(f"AccessDenied: {EVIL}", NOW - 60).failed(f"AccessDenied: {EVIL}", NOW - 5)


def paused() -> TaskState:
    return TaskState(
        key=TaskKey("staging", "eu-west-1", BATCH),
        account_id="444455556666",
        up=True,
        last_success=NOW - 1,
        polling_active=False,
    )


@pytest.fixture
def store() -> Store:
    store = Store(lambda: NOW - 1)
    for state in (east_metrics(), east_jobs(), west_down(), paused()):
        store.publish(state)
    return store


@pytest.fixture
def metrics(store: Store) -> SelfMetrics:
    metrics = SelfMetrics(store, lambda: NOW)
    metrics.record_call("111122223333", "us-east-1", "GetMetricData", "success", 0)
    metrics.record_call("111122223333", "us-east-1", "ListMetrics", "success", 1)
    metrics.record_metrics_requested("111122223333", "us-east-1", 2000)
    metrics.record_call("111122223333", "us-west-2", "GetMetricData", "access_denied", 0)
    metrics.record_call("111122223333", "us-west-2", "GetMetricData", "throttled", 2)
    metrics.cycles.labels("111122223333", "us-west-2", BATCH, "error").inc(2)
    metrics.cycles.labels("111122223333", "us-west-2", BATCH, "success").inc(7)
    return metrics


def status_of(store: Store, metrics: SelfMetrics | None = None, limit: int = DEFAULT_LIMIT) -> Any:
    """What /api/status serves: the built dict through strict JSON (no NaN)."""
    built = build_status(store.snapshot, NOW, NOW - 3725, metrics, limit)
    return json.loads(json.dumps(built, allow_nan=False))


def test_exporter_and_summary(store: Store, metrics: SelfMetrics) -> None:
    status = status_of(store, metrics)
    ex, summary = status["exporter"], status["summary"]
    assert ex["uptime_seconds"] == 3725 and ex["ready"] and ex["health"] == "degraded"
    assert ex["snapshot_version"] == 4 and ex["snapshot_age_seconds"] == 1
    assert summary["tasks"] == 4 and summary["tasks_up"] == 2 and summary["tasks_paused"] == 1
    assert summary["tasks_down"] == 1
    assert summary["models"] == 3 and summary["jobs_running"] == 2 and summary["jobs_finished"] == 1
    assert summary["aws_api_requests"] == 4 and summary["aws_api_errors"] == 2
    assert summary["metrics_requested"] == 2000
    assert summary["cost_dollars"] == pytest.approx(2000 * 0.01 / 1000 + 2 * 0.01 / 1000)
    assert status["links"]["metrics"] == "/metrics" and status["links"]["readyz"] == "/readyz"
    assert status["links"]["runbooks"] == "/runbooks"
    # spend so far over 3,725 s of uptime, projected over a 730-hour month
    assert summary["projected_monthly_cost_dollars"] == pytest.approx(summary["cost_dollars"] / 3725 * 730 * 3600)


def test_regions_put_failing_ones_first_with_errors_calls_and_spend(store: Store, metrics: SelfMetrics) -> None:
    regions = status_of(store, metrics)["regions"]["items"]
    assert [(r["target"], r["region"], r["health"]) for r in regions] == [
        ("prod", "us-west-2", "down"),
        ("prod", "us-east-1", "up"),
        ("staging", "eu-west-1", "up"),
    ]
    west, east, staging = regions
    (task,) = west["tasks"]
    assert task["health"] == "down" and not task["up"] and task["consecutive_failures"] == 2
    assert task["last_error"] == {"message": f"AccessDenied: {EVIL}", "time": NOW - 5, "age_seconds": 5}
    assert task["last_success_age_seconds"] == 400 and task["series"] == 1
    assert task["cycles"] == {"success": 7, "error": 2}
    assert west["aws_api"]["by_outcome"] == {"access_denied": 1, "throttled": 1}
    assert west["aws_api"]["errors"] == 2 and west["aws_api"]["throttled"] == 1 and west["aws_api"]["retries"] == 2
    assert [t["namespace"] for t in east["tasks"]] == [BATCH, "bedrock:jobs"]
    assert east["aws_api"]["requests"] == 2 and east["aws_api"]["by_operation"] == {
        "GetMetricData": 1,
        "ListMetrics": 1,
    }
    assert east["aws_api"]["metrics_requested"] == 2000
    assert east["aws_api"]["cost_dollars"] == pytest.approx(0.02 + 2 * 0.00001)
    assert east["tasks"][0]["newest_datapoint_age_seconds"] == 90
    assert east["tasks"][0]["last_error"]["message"] == "old failure"  # recovered: shown, with no failures in a row
    assert east["tasks"][0]["consecutive_failures"] == 0
    assert staging["tasks"][0]["health"] == "paused" and not staging["tasks"][0]["polling_active"]
    assert staging["aws_api"]["requests"] == 0


def test_models_have_newest_values_and_job_counts(store: Store) -> None:
    models = {(m["region"], m["model_id"]): m for m in status_of(store)["models"]["items"]}
    assert set(models) == {
        ("us-east-1", "amazon.nova-pro-v1:0"),
        ("us-east-1", EVIL),
        ("us-west-2", "amazon.titan-embed-text-v2:0"),
    }
    nova = models[("us-east-1", "amazon.nova-pro-v1:0")]
    assert nova["metrics"][1] == {
        "metric": "NumberOfRecordsPendingProcessing",
        "statistic": "Maximum",
        "value": 1234.0,
        "timestamp": None,
        "age_seconds": None,
        "stale": False,
    }
    assert nova["refreshed"] == NOW - 30 and nova["refreshed_age_seconds"] == 30
    assert nova["jobs_by_status"] == {"InProgress": 1, "Completed": 1}
    assert nova["batch_price"] is None  # the fixture's store has no price table: the page says so
    assert "no price" in render_html(status_of(store))
    (evil,) = models[("us-east-1", EVIL)]["metrics"]
    assert (evil["value"], evil["timestamp"], evil["age_seconds"]) == (None, NOW - 90, 90)  # NaN becomes null


def test_jobs_have_progress_and_times(store: Store) -> None:
    status = status_of(store)
    running = status["running_jobs"]["items"]
    assert [j["job_name"] for j in running] == ["running-soon", EVIL_ATTR]  # soonest expiration first
    soon = running[0]
    assert soon["status"] == "InProgress" and not soon["finished"] and soon["progress"] == 0.4
    assert soon["total_records"] == 1000 and soon["processed_records"] == 400
    assert soon["succeeded_records"] == 390 and soon["failed_records"] == 10
    assert soon["since_submit_seconds"] == 600 and soon["to_expiration_seconds"] == 60
    assert soon["job_arn"].endswith("/running-soon") and soon["model_id"] == "amazon.nova-pro-v1:0"
    assert running[1]["total_records"] is None and running[1]["progress"] is None
    (done,) = status["finished_jobs"]["items"]
    assert done["status"] == "Completed" and done["finished"] and done["ended"] == NOW - 120 and done["progress"] == 1


def test_sections_are_capped_with_a_count_of_the_rest() -> None:
    store = Store(lambda: NOW)
    samples = tuple(cw(f"model-{i:04d}", "Maximum", i) for i in range(250))
    store.publish(TaskState(key=TaskKey("t", "us-east-1", BATCH), account_id="1", values=samples, up=True))
    models = status_of(store)["models"]
    assert models["total"] == 250 and models["shown"] == 200 and len(models["items"]) == 200
    page = render_html(build_status(store.snapshot, NOW, NOW, None))
    assert "50 more models not shown" in page and page.count('class="model-id"') == 200
    assert status_of(store, limit=5)["models"]["shown"] == 5


class Page(HTMLParser):
    """The tags, attributes and text of a page, as a browser's parser sees them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_everything_from_outside_is_shown_as_text(store: Store, metrics: SelfMetrics) -> None:
    page = render_html(build_status(store.snapshot, NOW, NOW - 10, metrics))
    parsed = Page(page)
    text = "".join(parsed.text)
    assert EVIL in text and EVIL_ATTR in text and f"AccessDenied: {EVIL}" in text
    assert "<script>alert" not in page and "<img" not in page
    assert "img" not in {tag for tag, _ in parsed.tags}
    # one external script and stylesheet; nothing inline, which the Content-Security-Policy would block
    assert [attrs for tag, attrs in parsed.tags if tag == "script"] == [{"src": "static/status.js", "defer": None}]
    assert "style" not in {tag for tag, _ in parsed.tags}
    inline = [(tag, name) for tag, attrs in parsed.tags for name in attrs if name == "style" or name.startswith("on")]
    assert not inline
    titles = [attrs["title"] for _, attrs in parsed.tags if "title" in attrs]
    assert any(EVIL_ATTR in (title or "") for title in titles)  # attribute values escaped too, and intact


def test_page_reads_well_with_no_data() -> None:
    store = Store(lambda: NOW)
    status = status_of(store)
    assert status["exporter"]["health"] == "starting" and not status["exporter"]["ready"]
    page = render_html(build_status(store.snapshot, NOW, NOW, None))
    assert "No poll cycle has finished yet." in page and "No unfinished batch job." in page


def test_respond_routes_and_validates(store: Store, metrics: SelfMetrics) -> None:
    page = StatusPage(store, metrics, lambda: NOW)
    html_answer = page.respond("/")
    assert html_answer is not None and html_answer.status == 200 and html_answer.content_type.startswith("text/html")
    api = page.respond("/api/status?limit=1")
    assert api is not None and api.content_type == "application/json"
    assert json.loads(api.body)["regions"]["shown"] == 1
    for bad in ("/api/status?limit=0", "/?limit=x", f"/?limit={10**6}"):
        answer = page.respond(bad)
        assert answer is not None and answer.status == 400, bad
    css, js = page.respond("/static/status.css"), page.respond("/static/status.js")
    assert css is not None and css.content_type.startswith("text/css")
    assert js is not None and js.content_type.startswith("text/javascript")
    assert page.respond("/static/other.js") is None and page.respond("/nothing") is None


@pytest.fixture
def server(store: Store, metrics: SelfMetrics) -> Iterator[str]:
    page = StatusPage(store, metrics, lambda: NOW)
    srv = MetricsServer(("127.0.0.1", 0), Router(store, Exposition(store, metrics.registry), pages=(page,)))
    srv.start()
    yield srv.url
    srv.stop()


def test_served_with_security_headers(server: str) -> None:
    for path, kind in (
        ("/", "text/html"),
        ("/api/status", "application/json"),
        ("/static/status.js", "text/javascript"),
    ):
        with urllib.request.urlopen(server + path, timeout=5) as response:  # loopback only
            assert response.status == 200 and response.headers["Content-Type"].startswith(kind)
            for name, value in SECURITY_HEADERS.items():
                assert response.headers[name] == value, name
            body = response.read()
    assert b"refresh" in body
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "img-src 'self' data:" in csp
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(server + "/static/nothing.js", timeout=5)
    assert missing.value.code == 404 and missing.value.headers["X-Frame-Options"] == "DENY"
