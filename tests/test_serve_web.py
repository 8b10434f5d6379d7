"""The web view of ``hostapp serve`` in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium): the waterfall of a real run of
``examples/outbound_http.py``, one call with its redacted header, the plugins page, and a
live run updating while it runs.

Without Chromium the tests are skipped, unless ``CI`` is set: then they fail (``.ci/run``
installs the packages).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from hostapp.store import Store

from test_serve import ROOT, clean_env, serving, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

#: The flags the brief asks for: this machine has no network, and Chromium otherwise keeps
#: trying to reach its services.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,900",
)


@pytest.fixture
def browser(tmp_path):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message + " and CI is set")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def run_demo(cwd: Path) -> str:
    """``hostapp run examples/outbound_http.py`` in a copy of the project's examples (so
    the call sites read ``examples/outbound_http.py:62``, as after ``make demo``)."""
    (cwd / "hostapp.toml").write_text("[events]\nflush_interval_ms = 20\n")
    (cwd / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "outbound_http.py", cwd / "examples" / "outbound_http.py")
    out = subprocess.run([sys.executable, "-m", "hostapp", "run", "examples/outbound_http.py"],
                         cwd=cwd, env=clean_env(cwd), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with Store(cwd / ".hostapp" / "hostapp.sqlite3") as store:
        return store.last_run().id


def stored_calls(cwd: Path, run_id: str) -> list:
    """The run's HTTP calls as the user sees them: one per call (not the library calls
    made inside another)."""
    with Store(cwd / ".hostapp" / "hostapp.sqlite3") as store:
        return [e for e in store.events(run_id=run_id, type="outbound_http_request")
                if e.data.get("nested_in") is None]


def test_the_waterfall_of_the_demo_run(tmp_path, browser):
    """Must show: as many bars as HTTP calls, labels right, the secret header [REDACTED]."""
    from selenium.webdriver.common.by import By

    run_id = run_demo(tmp_path)
    calls = stored_calls(tmp_path, run_id)
    assert len(calls) == 8  # what examples/outbound_http.py does: 8 calls through 4 libraries
    with serving(tmp_path) as served:
        browser.get(f"{served.url}runs/{run_id}")
        bars = browser.find_elements(By.CSS_SELECTOR, ".waterfall .bar")
        assert len(bars) == len(calls)
        labels = [row.text for row in browser.find_elements(By.CSS_SELECTOR, ".waterfall .row.call .label")]
        for call, label in zip(calls, labels):  # in start order, each with its method, URL and call site
            line = label.splitlines()
            assert line[0].split(" ", 1)[1].startswith(f"{call.data['method']} {call.data['url'][:40]}"), label
            assert line[1].endswith(f"outbound_http.py:{call.data['call_site']['line']}"), label
        assert "/nowhere" in labels[1] and "404" in labels[1]
        statuses = [bar.get_attribute("class").split()[1] for bar in bars]
        assert statuses.count("s4xx") == 1 and statuses.count("s2xx") == 7
        lefts = [float(bar.value_of_css_property("left").removesuffix("px")) for bar in bars]
        assert lefts == sorted(lefts) and lefts[0] < lefts[-1]  # placed by start time
        widths = [bar.size["width"] for bar in bars]
        assert max(widths) > min(widths)  # sized by duration
        lanes = browser.find_elements(By.CSS_SELECTOR, ".waterfall .lane")
        assert any(lane.get_attribute("data-thread") == "MainThread" for lane in lanes)
        browser.save_screenshot(str(tmp_path / "waterfall.png"))  # docs/images/serve-waterfall.png is one
        assert (tmp_path / "waterfall.png").stat().st_size > 10_000

        first = bars[0]  # urllib's GET /users/1, sent with "Authorization: Bearer demo-secret-token"
        first.click()
        wait_for(lambda: "/events/" in browser.current_url, "the call page")
        request_side = browser.find_element(By.CSS_SELECTOR, ".side.request")
        headers = {row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td")
                   for row in request_side.find_elements(By.CSS_SELECTOR, "table.headers tr")}
        assert headers["Authorization"].text == "[REDACTED]"
        assert "redacted" in headers["Authorization"].get_attribute("class")
        assert "demo-secret-token" not in browser.page_source
        response_side = browser.find_element(By.CSS_SELECTOR, ".side.response")
        assert "200" in response_side.text and "Content-Type application/json" in response_side.text
        assert request_side.location["y"] == response_side.location["y"]  # side by side
        browser.save_screenshot(str(tmp_path / "call.png"))

        browser.get(f"{served.url}plugins")
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "http.requests" in page and "started" in page and "Sinks" in page

        browser.get(served.url)
        runs = browser.find_element(By.CSS_SELECTOR, "table.runs").text
        assert run_id[:12] in runs and "outbound_http.py" in runs and "live" in runs  # the serve run itself


LIVE_APP = textwrap.dedent('''
    """Makes one call, waits for a flag file, makes another, waits for a second flag."""
    import http.server, pathlib, sys, threading, time, urllib.request

    class Ok(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def wait(flag):
        deadline = time.monotonic() + 60
        while not pathlib.Path(flag).exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    urllib.request.urlopen(f"{base}/first").read()
    wait(sys.argv[1])
    urllib.request.urlopen(f"{base}/second").read()
    wait(sys.argv[2])
''')


def test_a_live_run_updates_while_it_runs(tmp_path, browser):
    from selenium.webdriver.common.by import By

    (tmp_path / "hostapp.toml").write_text("[events]\nflush_interval_ms = 20\n")
    (tmp_path / "live_app.py").write_text(LIVE_APP)
    env = clean_env(tmp_path)
    program = subprocess.Popen(
        [sys.executable, "-m", "hostapp", "run", "-q", "live_app.py", str(tmp_path / "go"), str(tmp_path / "end")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        db = tmp_path / ".hostapp" / "hostapp.sqlite3"
        wait_for(db.exists, "the store")

        def first_call_stored():
            with Store(db) as store:
                run = store.runs(1)
                return run and store.count_events(run_id=run[0].id, type="outbound_http_request") and run[0].id

        run_id = wait_for(first_call_stored, "the first call in the store", timeout=30)
        with serving(tmp_path) as served:
            browser.get(f"{served.url}runs/{run_id}")
            assert browser.find_element(By.CSS_SELECTOR, ".badge.live")
            assert len(browser.find_elements(By.CSS_SELECTOR, ".waterfall .row.call")) == 1
            (tmp_path / "go").write_text("")
            wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".waterfall .row.call")) == 2,
                     "the second call to appear in the page (server-sent events)", timeout=30)
            labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".waterfall .row.call .what")]
            assert [label.rsplit("/", 1)[1] for label in labels] == ["first", "second"]
            (tmp_path / "end").write_text("")
            assert program.wait(timeout=60) == 0
            wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, "#run-live .badge.live"),
                     "the run to be shown as ended", timeout=30)
            assert "exit 0" in browser.find_element(By.CSS_SELECTOR, ".run-meta").text
    finally:
        if program.poll() is None:
            program.kill()
        program.communicate(timeout=30)


def test_events_of_plugin_types_are_drawn_by_their_renderer(tmp_path, browser):
    """A plugin's own event type, through the render hook `hostapp events` uses: its label
    and summary on the waterfall, its fields on its page."""
    from selenium.webdriver.common.by import By

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "payments.py").write_text(textwrap.dedent('''
        import hostapp

        @hostapp.hookimpl
        def hostapp_event_renderers():
            return hostapp.EventRenderer(
                name="charge", event_types=("charge_end",), shape="span", label="payment",
                summary=lambda e: f"charged {e.data['amount']} EUR to {e.data['customer']}",
                fields=lambda e: [("amount", e.data["amount"]), ("customer", e.data["customer"])],
            )
    '''))
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n[events]\nflush_interval_ms = 20\n')
    (tmp_path / "app.py").write_text(textwrap.dedent('''
        from hostapp import Host
        with Host(command=["app.py"]) as host:
            host.emit("charge_end", "stripe", amount=12, customer="ada", duration_ns=30_000_000)
            host.emit("cache_note", None, key="users", hit=True)
    '''))
    out = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=clean_env(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with Store(tmp_path / ".hostapp" / "hostapp.sqlite3") as store:
        run_id = store.last_run().id
    with serving(tmp_path) as served:
        browser.get(f"{served.url}runs/{run_id}")
        (row,) = browser.find_elements(By.CSS_SELECTOR, ".waterfall .row.call")
        assert row.find_element(By.CSS_SELECTOR, ".kind").text == "PAYMENT"
        assert row.find_element(By.CSS_SELECTOR, ".what").text == "charged 12 EUR to ada"
        (mark,) = browser.find_elements(By.CSS_SELECTOR, ".waterfall .mark")
        assert mark.get_attribute("title") == 'cache_note: key=users hit=true'
        row.find_element(By.CSS_SELECTOR, ".bar").click()
        wait_for(lambda: "/events/" in browser.current_url, "the event page")
        cells = {r.find_element(By.TAG_NAME, "th").text: r.find_element(By.TAG_NAME, "td").text
                 for r in browser.find_elements(By.CSS_SELECTOR, "table.meta tr")}
        assert (cells["amount"], cells["customer"]) == ("12", "ada")
        assert json.loads(browser.find_element(By.CSS_SELECTOR, "details pre").get_attribute("textContent"))["type"] \
            == "charge_end"
