"""The web view in a real headless browser (Chromium + chromedriver): a finished run, a run
that is still going (its page updates itself), the runs list, and nothing fetched from
another host."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestra.bench._procs import free_port

from .conftest import ROOT, need, orchestra

pytestmark = pytest.mark.slow


def _wait_for(predicate: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def ui(store: str) -> Iterator[str]:
    """`orchestra ui` as a user starts it, on a free port, over the test's store."""
    import httpx

    port = free_port()
    env = {**os.environ, "ORCHESTRA_CHECKPOINT_URL": store}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestra", "ui", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"orchestra ui exited: {out}")
        try:
            return httpx.get(base + "/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_for(up, "orchestra ui to answer")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by chromedriver (Debian's packages), no network needed."""
    chromium = need("chromium", "chromium")
    driver_path = need("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1100"):
        opts.add_argument(arg)
    opts.add_argument("--disable-dev-shm-usage")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _resources_from_other_hosts(driver: Any) -> list[str]:
    """Every script, stylesheet, image or frame the page loads from somewhere else."""
    urls: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('script[src],link[href],img[src],iframe[src]')]"
        ".map(e => e.src || e.href)"
        ".concat(performance.getEntriesByType('resource').map(e => e.name));"
    )
    return [u for u in urls if not u.startswith(("http://127.0.0.1", "data:"))]


def test_finished_run_page_shows_picture_log_and_trace_link(
    ui: str, rerouted_run: str, browser: Any, tmp_path: Path
) -> None:
    """A rerouted flagship run: the picture marks the failed tool, the log shows the
    reroute, the Jaeger link names the run; the screenshot is a real, coloured page."""
    from selenium.webdriver.common.by import By

    browser.get(f"{ui}/runs/{rerouted_run}")
    assert browser.find_element(By.ID, "run-status").text == "completed"
    svg = browser.find_element(By.CSS_SELECTOR, "#picture svg")
    failed = svg.find_element(By.ID, "skill:refund/stripe_refund")
    assert "failed" in failed.get_attribute("class")
    assert "chosen" in svg.find_element(By.ID, "skill:refund/paypal_refund").get_attribute("class")
    rows = browser.find_elements(By.CSS_SELECTOR, "#decisions tbody tr")
    kinds = [r.find_element(By.CSS_SELECTOR, "td.kind").text for r in rows]
    assert "fail" in kinds and "reroute" in kinds and kinds[-1] == "complete"
    reroute = rows[kinds.index("reroute")].text
    assert "rerouted to paypal_refund" in reroute
    link = browser.find_element(By.ID, "jaeger").get_attribute("href")
    assert "16686" in link and rerouted_run in link
    assert _resources_from_other_hosts(browser) == []
    shot = tmp_path / "finished.png"
    assert browser.save_screenshot(str(shot))
    _assert_real_picture(shot)

    # the runs list links to it, with status and cost
    browser.get(ui + "/")
    row = browser.find_element(By.XPATH, f"//table[@id='runs']//tr[td/a[text()='{rerouted_run}']]")
    assert "completed" in row.text and "$0.0047" in row.text


def test_running_run_page_updates_itself_until_the_run_completes(
    ui: str, store: str, browser: Any, tmp_path: Path
) -> None:
    """A run that waits on a gate: its page shows it running, then — without a reload —
    completed, once the gate opens."""
    from selenium.webdriver.common.by import By

    gate = tmp_path / "gate"
    env = {**os.environ, "ORCHESTRA_CHECKPOINT_URL": store, "ORCHESTRA_TEST_GATE": str(gate)}
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestra",
            "run",
            "tests/viz/gated_graph.py",
            "-q",
            "--run-id",
            "gatedrun0001",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        import httpx

        def running() -> bool:
            if run.poll() is not None:
                out = run.stdout.read().decode() if run.stdout else ""
                raise AssertionError(f"the gated run exited early: {out}")
            r = httpx.get(f"{ui}/api/runs/gatedrun0001", timeout=2)
            if r.status_code != 200:
                return False
            state = r.json()
            return state["status"] == "running" and "fetch" in state["completed"]

        _wait_for(running, "the gated run to be checkpointed past its first step", timeout=120)
        browser.get(f"{ui}/runs/gatedrun0001")
        assert browser.find_element(By.ID, "run-status").text == "running"
        marker = browser.execute_script("window.__sameDocument = 42; return 1;")
        assert marker == 1
        fetch = browser.find_element(By.ID, "skill:fetch/fetch_order")
        assert "chosen" in fetch.get_attribute("class")
        shot = tmp_path / "running.png"
        assert browser.save_screenshot(str(shot))
        _assert_real_picture(shot)

        gate.touch()
        _wait_for(
            lambda: browser.find_element(By.ID, "run-status").text == "completed",
            "the open page to show the run completed",
            timeout=120,
        )
        # the same document (no reload), now with the finished route drawn
        assert browser.execute_script("return window.__sameDocument") == 42
        close = browser.find_element(By.ID, "skill:close/close_order")
        assert "chosen" in close.get_attribute("class")
        assert run.wait(timeout=60) == 0
    finally:
        if run.poll() is None:
            gate.touch()
            run.kill()


def _assert_real_picture(path: Path) -> None:
    """A screenshot that is a rendered page: a PNG with many distinct colours."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(path) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot looks blank"


def test_unknown_run_is_a_404_with_a_reason(ui: str, store: str) -> None:
    import httpx

    r = httpx.get(f"{ui}/runs/nosuchrun", timeout=5)
    assert r.status_code == 404 and "no run 'nosuchrun'" in r.text
    assert orchestra("trace", "nosuchrun", "-o", "/tmp/x.svg", store=store).returncode == 2
