"""What the UI shows, asked the way the UI asks: GraphQL against the repo's workspace.yaml,
loaded in a code-server subprocess exactly as `dagster dev` loads it."""

from pathlib import Path

import dagster as dg
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from segmentation_platform.contracts import CONTRACTS

REPO = Path(__file__).resolve().parent.parent.parent

ASSETS_QUERY = """
query {
  assetNodes {
    assetKey { path }
    groupName
    hasAssetChecks
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
}
"""


def test_ui_lists_the_ingestion_assets_with_their_checks(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with define_out_of_process_context(str(REPO / "workspace.yaml"), None, instance) as context:
            result = execute_dagster_graphql(context, ASSETS_QUERY)
    assert not result.errors, result.errors
    nodes = {"/".join(n["assetKey"]["path"]): n for n in result.data["assetNodes"]}
    for source in CONTRACTS:
        raw, quarantine = nodes[f"raw/{source}"], nodes[f"quarantine/{source}"]
        assert raw["groupName"] == quarantine["groupName"] == "ingestion"
        checks = {c["name"]: c["blocking"] for c in raw["assetChecksOrError"]["checks"]}
        assert checks == {"reconciles_with_landing": True, "great_expectations_contract": False}
    groups = {n["groupName"] for n in nodes.values()}
    assert groups >= {"ingestion", "identity", "features", "models", "segments", "activation", "measurement"}
