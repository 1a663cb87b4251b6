"""The Dagster UI as an operator sees it, in headless Chromium driven over DevTools.

The asset graph is a client-side React app: only a real browser shows whether the groups
of the Definitions are drawn. Chromium is driven over the DevTools protocol (not
`--dump-dom`) so each page is read once it has rendered, not after a fixed time budget,
and the first-run dialog can be dismissed the way a user does.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--window-size=1600,1200",
]
LOCATION = "segmentation_platform"
FIRST_RUN_DIALOG = "Join the Dagster community"
PAGE_TIMEOUT = 90


class Browser:
    """One Chromium page over the DevTools protocol: navigate, evaluate, screenshot."""

    def __init__(self, profile: Path, orphan_guard):
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,
        )
        orphan_guard(self.process.pid)
        # Chromium writes its DevTools port to the profile once it listens.
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().split()) == 2):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError(f"{CHROMIUM} did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self._next_id = 0

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        self.socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:  # events arrive in between; keep the reply to this call
            message = json.loads(self.socket.recv(timeout=PAGE_TIMEOUT))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = PAGE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText.slice(0, 1500) : ''")
                raise AssertionError(f"timed out waiting for {what}; page text:\n{text}")
            time.sleep(0.25)
        return value

    def settle(self, expression: str, what: str, quiet: float = 1.0) -> list:
        """Wait for a non-empty list, then until it stops changing (the graph lays out and zooms)."""
        value = self.wait_for(f"(v => v.length > 0 && v)({expression})", what)
        deadline, stable_since = time.monotonic() + PAGE_TIMEOUT, time.monotonic()
        while time.monotonic() - stable_since < quiet and time.monotonic() < deadline:
            time.sleep(0.2)
            current = self.evaluate(expression)
            if current != value:
                value, stable_since = current, time.monotonic()
        return value

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", f"{url} to load")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory, orphan_guard):
    if CHROMIUM is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{message}: CI must install it for the browser tests", pytrace=False)
        pytest.skip(message)
    browser = Browser(tmp_path_factory.mktemp("chromium-profile"), orphan_guard)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def groups() -> dict[str, set[str]]:
    """Asset group -> the names of its materializable assets, from the Definitions."""
    from segmentation_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    by_group: dict[str, set[str]] = {}
    for key in graph.materializable_asset_keys:
        by_group.setdefault(graph.get(key).group_name, set()).add(key.path[-1])
    return by_group


# Group boxes of the global lineage, and asset nodes of a group's graph, with their names.
GROUP_NODES = """[...document.querySelectorAll('foreignObject.group')]
  .map(node => (node.querySelector('[data-tooltip]')?.getAttribute('data-tooltip')
                || node.querySelector('div')?.innerText.split('\\n')[0] || '').trim())
  .filter(Boolean)"""
ASSET_NODES = """[...document.querySelectorAll('[class*="AssetNode_assetName"]')]
  .map(node => node.innerText.trim()).filter(Boolean)"""
DIALOG_SHOWN = f"document.body.innerText.includes({json.dumps(FIRST_RUN_DIALOG)})"


def _dismiss_first_run_dialog(browser: Browser, server) -> bool:
    """The UI on 127.0.0.1 shows a community dialog over every page until "Skip" is clicked,
    which the instance then remembers (`shouldShowNux`). It pops up once its own query
    returns, possibly after the graph has drawn, so ask the instance whether it will come."""
    if not server.graphql("{ shouldShowNux }")["shouldShowNux"]:
        return False
    browser.wait_for(DIALOG_SHOWN, "the first-run dialog")
    browser.evaluate(
        "[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Skip').click()"
    )
    browser.wait_for(f"!({DIALOG_SHOWN})", "the first-run dialog to close")
    # The dialog closes before the UI's mutation that remembers it has reached the instance.
    deadline = time.monotonic() + 30
    while server.graphql("{ shouldShowNux }")["shouldShowNux"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert server.graphql("{ shouldShowNux }") == {"shouldShowNux": False}
    return True


def test_global_lineage_draws_every_asset_group(browser, groups, dagster_dev, tmp_path):
    """Every group of the Definitions is a box of the global lineage, with no dialog over it."""
    browser.open(f"{dagster_dev.url}/asset-groups")
    _dismiss_first_run_dialog(browser, dagster_dev)
    drawn = browser.settle(GROUP_NODES, "group boxes")
    assert sorted(drawn) == sorted(groups)
    shot = browser.screenshot(tmp_path / "global-lineage.png")
    assert not browser.evaluate(DIALOG_SHOWN)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000
    print(f"screenshot: {shot}")


def test_each_group_graph_draws_only_its_own_assets(browser, groups, dagster_dev, tmp_path):
    """`/locations/<location>/asset-groups/<group>` opens the group's graph (a plain
    `/asset-groups/<group>` now lands on the global lineage), drawing that group's assets."""
    for group, names in sorted(groups.items()):
        browser.open(f"{dagster_dev.url}/locations/{LOCATION}/asset-groups/{group}")
        _dismiss_first_run_dialog(browser, dagster_dev)
        drawn = browser.settle(ASSET_NODES, f"asset nodes of {group}")
        assert set(drawn) <= names, f"{group} draws assets of other groups: {set(drawn) - names}"
        title = browser.evaluate(
            "document.querySelector('[class*=\"PageHeader_titleAndTags\"]')?.innerText || ''"
        )
        assert title.split("\n")[0].strip() == group and "Asset Group" in title, title
        shot = browser.screenshot(tmp_path / f"group-{group}.png")
        assert shot.stat().st_size > 30_000, group
    print(f"screenshots: {tmp_path}")
