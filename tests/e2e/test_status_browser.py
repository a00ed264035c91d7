"""End to end: the status page of the running demo in headless Chromium (Debian's chromium + chromium-driver)."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.prom_server import Process, poll, start_demo

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOT = ARTIFACTS / "status-page.png"
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver"
DEMO_MODELS = 5
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        return json.load(response)


def _demo_status(base: str) -> Any:
    """The demo's /api/status once it shows every model and a running job with record counts, else None."""
    try:
        status = _get(f"{base}/api/status")
    except OSError:
        return None
    jobs = status["running_jobs"]["items"]
    ready = status["exporter"]["ready"] and status["models"]["total"] >= DEMO_MODELS
    return status if ready and any(j["total_records"] for j in jobs) else None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    process: Process
    process, address = start_demo(tmp_path_factory.mktemp("status-demo"), duration=120)
    base = f"http://{address}"
    try:
        status = poll(lambda: _demo_status(base) or not process.alive(), 30, "the demo's status shows its models")
        assert process.alive(), f"the demo exited:\n{process.tail()}"
        yield base, status
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail(f"headless Chromium and chromedriver are needed on PATH for this test: {INSTALL}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is needed for this test: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def _console_errors(driver: Any) -> list[str]:
    entries = driver.get_log("browser")
    return [f"{entry['level']}: {entry['message']}" for entry in entries if entry["level"] == "SEVERE"]


def test_status_page_in_a_browser(browser: Any, demo: tuple[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    base, status = demo
    browser.get(f"{base}/")
    assert browser.title == "bedrock-batch-exporter status"
    models = {m["model_id"] for m in status["models"]["items"]}
    assert len(models) == DEMO_MODELS, models
    shown = {element.text for element in browser.find_elements(By.CSS_SELECTOR, "#models .model-id")}
    assert models <= shown, f"models missing from the page: {models - shown}"
    bars = browser.find_elements(By.CSS_SELECTOR, "#jobs svg.bar[role=progressbar]")
    assert bars, "no job progress bar on the page"
    assert all(int(bar.get_attribute("aria-valuemax")) > 0 for bar in bars)
    # the stylesheet applied (CSP allows 'self'), and status.js ran and refreshed the page in place once
    assert browser.find_element(By.CSS_SELECTOR, "header").value_of_css_property("display") == "flex"
    assert browser.find_element(By.CSS_SELECTOR, "#refresh button").text == "pause"
    poll(lambda: browser.execute_script("return document.documentElement.dataset.refreshed"), 15, "one refresh")
    assert browser.find_elements(By.CSS_SELECTOR, "#models .model-id"), "the refresh emptied the page"
    assert not _console_errors(browser), _console_errors(browser)

    # the whole page, not just the window: Chromium renders beyond the viewport through the DevTools protocol
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert SCREENSHOT.stat().st_size > 10_000
    print(f"\nscreenshot of the status page: {SCREENSHOT}")
