"""The built documentation: every public name is in the API reference, and the pages render in a
headless browser with no console errors, gallery images that load, and mathematics typeset by
the MathJax copy inside the site (no network).

These tests read a build made beforehand (``make -C docs html``; ``.ci/run`` builds it once before
the test suite), at ``docs/_build/html`` or ``$DLPDE_DOCS_HTML``; they do not build the docs
themselves (a build runs the gallery: minutes, not the seconds of a unit test). Without Sphinx,
Chromium or a build they skip with the reason; with ``DLPDE_DOCS_REQUIRED=1`` (set by ``.ci/run``)
a missing piece fails instead, so CI cannot skip them silently.

The browser is Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``),
with the standard library only.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from dlpde._registry import public_subpackages

ROOT = Path(__file__).resolve().parents[2]
HTML = Path(os.environ.get("DLPDE_DOCS_HTML", ROOT / "docs" / "_build" / "html"))
REQUIRED = os.environ.get("DLPDE_DOCS_REQUIRED") == "1"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(f"{reason} (DLPDE_DOCS_REQUIRED=1)")
        pytest.skip(reason)


def _need_build() -> None:
    _need(importlib.util.find_spec("sphinx") is not None, 'Sphinx is not installed: pip install -e ".[docs]"')
    _need((HTML / "objects.inv").exists(), f"no docs build at {HTML}: run make -C docs html")


def read_inventory(path: Path) -> dict[str, str]:
    """``objects.inv`` (Sphinx inventory version 2) as {name: "domain:role"}."""
    data = path.read_bytes()
    lines = data.split(b"\n", 4)
    assert lines[0].startswith(b"# Sphinx inventory version 2"), lines[0]
    entries = {}
    for line in zlib.decompress(lines[4]).decode().splitlines():
        name, rest = line.split(" ", 1)
        entries.setdefault(name, rest.split(" ", 1)[0])
    return entries


def test_every_public_name_of_every_subpackage_is_in_the_api_reference():
    _need_build()
    inventory = read_inventory(HTML / "objects.inv")
    subpackages = public_subpackages()
    assert {"dlpde.shared", "dlpde.hjb", "dlpde.symmetry", "dlpde.symmetry.pes", "dlpde.meanfield",
            "dlpde.ntk", "dlpde.inverse"} <= set(subpackages), subpackages
    missing, pages = [], []
    for sub in subpackages:
        if inventory.get(sub) != "py:module":
            missing.append(sub)
        for name in importlib.import_module(sub).__all__:
            full = f"{sub}.{name}"
            if not inventory.get(full, "").startswith("py:"):
                missing.append(full)
            if not (HTML / "api" / "generated" / f"{full}.html").exists():
                pages.append(full)
    assert not missing, f"not in the API reference (rebuild the docs?): {missing}"
    assert not pages, f"no page of their own: {pages}"


# --- the browser ---------------------------------------------------------------------------------
_TRAMPOLINE = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
               "os.execv(sys.argv[3], sys.argv[3:])")


def _above_ten(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """Headless Chromium over the DevTools protocol (NUL-separated JSON on fds 3 and 4)."""

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--remote-debugging-pipe")

    def __init__(self, executable: str, profile: Path):
        self.log_path = profile.parent / f"{profile.name}-stderr.txt"
        self._log = open(self.log_path, "w")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # A small Python trampoline moves the pipe ends to the fds the browser expects (3: commands,
        # 4: replies); they are first copied to fds >= 10 so that neither move overwrites the other.
        to_browser_r, from_browser_w = _above_ten(to_browser_r), _above_ten(from_browser_w)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(to_browser_r), str(from_browser_w), executable,
             *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
            pass_fds=(to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._messages: queue.Queue = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                self._messages.put(None)
                return
            buffer += chunk
            *complete, buffer = buffer.split(b"\0")
            for raw in complete:
                self._messages.put(json.loads(raw))

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             events: list | None = None, timeout: float = 30.0) -> dict:
        """Send a command and wait for its reply; events that arrive meanwhile go to ``events``."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"the browser exited: {self.log_tail()}") from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if reply is None:
                raise RuntimeError(f"the browser exited: {self.log_tail()}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if events is not None and "method" in reply:
                events.append(reply)

    def drain(self, events: list, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self._messages.get(timeout=left)
            except queue.Empty:
                return
            if message is not None and "method" in message:
                events.append(message)

    def log_tail(self) -> str:
        self._log.flush()
        lines = [line for line in self.log_path.read_text().splitlines() if "dbus" not in line]
        return "\n".join(lines[-15:])

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, queue.Empty, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        self._log.close()


# Evaluated in the page once it has loaded: images (gallery figures and thumbnails) that did not
# load, and the state of MathJax's typesetting.
PAGE_STATE = """(() => {
  const images = Array.from(document.images);
  const math = document.querySelectorAll('.math, mjx-container').length;
  return JSON.stringify({
    title: document.title,
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    mathjax: typeof window.MathJax === 'object' && !!window.MathJax.startup,
    math_nodes: document.querySelectorAll('div.math, span.math').length,
    typeset: document.querySelectorAll('mjx-container').length,
    math_errors: document.querySelectorAll('mjx-merror, .MathJax_Error').length,
    any_math: math,
  });
})()"""


def visit(browser: Browser, session: str, page: Path) -> tuple[dict, list[str]]:
    """Load ``page`` and return its state and the problems seen: console errors, uncaught
    exceptions, failed loads and any request that would leave the machine."""
    events: list = []
    browser.send("Page.navigate", {"url": page.as_uri()}, session, events)
    deadline = time.monotonic() + 60
    while not any(e.get("method") == "Page.loadEventFired" for e in events):
        assert time.monotonic() < deadline, f"{page} did not finish loading"
        browser.drain(events, 0.2)
    state = {}
    for _ in range(40):  # MathJax typesets asynchronously after the load event
        result = browser.send("Runtime.evaluate", {"expression": PAGE_STATE, "returnByValue": True},
                              session, events)
        state = json.loads(result["result"]["value"])
        if state["typeset"] >= state["math_nodes"]:
            break
        browser.drain(events, 0.25)
    browser.drain(events, 0.5)
    problems = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            problems.append(f"exception: {params['exceptionDetails'].get('text')} "
                            f"{params['exceptionDetails'].get('exception', {}).get('description', '')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            problems.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                         for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            problems.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"failed load: {params.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:", "about:", "blob:")):
                problems.append(f"network request (the docs must work offline): {url}")
    return state, problems


def _executable() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def page_session(tmp_path_factory):
    _need_build()
    executable = _executable()
    _need(executable is not None, "Chromium is not installed (apt-get install -y chromium)")
    browser = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        yield browser, session
    finally:
        browser.close()


def test_index_renders_without_errors(page_session):
    state, problems = visit(*page_session, HTML / "index.html")
    assert not problems, problems
    assert state["title"].startswith("dlpde"), state
    assert not state["broken"], state["broken"]


def test_a_gallery_page_renders_its_figures_and_math(page_session):
    page = HTML / "auto_examples" / "hjb" / "plot_hopf_lax.html"
    _need(page.exists(), f"{page} is missing")
    state, problems = visit(*page_session, page)
    assert not problems, problems
    figures = [p for p in (HTML / "_images").glob("sphx_glr_plot_hopf_lax_*.png")]
    assert figures and state["images"] >= 1, (figures, state)
    assert not state["broken"], state["broken"]
    assert state["mathjax"] and state["typeset"] >= state["math_nodes"] >= 1, state
    assert state["math_errors"] == 0, state


def test_the_gallery_index_loads_every_thumbnail(page_session):
    state, problems = visit(*page_session, HTML / "auto_examples" / "index.html")
    assert not problems, problems
    assert state["images"] >= 10 and not state["broken"], state


def test_a_thread_page_typesets_its_equations_offline(page_session):
    state, problems = visit(*page_session, HTML / "threads" / "ntk.html")
    assert not problems, problems
    assert state["mathjax"], "MathJax did not load from the built site"
    assert state["math_nodes"] >= 5 and state["typeset"] >= state["math_nodes"], state
    assert state["math_errors"] == 0, state
