"""The Dagster UI as an operator sees it, in headless Chromium driven over DevTools.

The asset graph is a client-side React app: only a real browser shows whether the groups
of the Definitions are drawn.
"""

import json
import time

import pytest

from tests.e2e.browser import Browser

pytestmark = pytest.mark.e2e
LOCATION = "segmentation_platform"
FIRST_RUN_DIALOG = "Join the Dagster community"


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
