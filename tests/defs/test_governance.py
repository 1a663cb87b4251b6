"""What a reviewer sees on every asset page of the UI, checked on the Definitions it loads.

The e2e instance test reads the same through GraphQL after real runs (row counts, scheme
and model versions); this one fails fast, without a run, when an asset lacks them.
"""

import dagster as dg
import pytest

from segmentation_platform.defs._lib.metadata import COLUMN_LINEAGE, OWNER


@pytest.fixture(scope="module")
def graph():
    from segmentation_platform.definitions import defs

    return defs.resolve_asset_graph()


def _nodes(graph):
    return [graph.get(key) for key in sorted(graph.materializable_asset_keys)]


def test_every_asset_has_owner_group_kinds_description_and_code_version(graph):
    gaps = {
        node.key.to_user_string(): missing
        for node in _nodes(graph)
        if (
            missing := [
                name
                for name, present in (
                    ("owner", OWNER in node.owners),
                    ("group", node.group_name not in (None, "default")),
                    ("kinds", bool(node.kinds)),
                    ("description", len(node.description or "") >= 40),
                    ("code_version", bool(node.code_version)),
                )
                if not present
            ]
        )
    }
    assert gaps == {}
    # Groups are the stages of the flow, in the order README's lineage walk-through follows.
    assert {node.group_name for node in _nodes(graph)} == {
        "ingestion",
        "identity",
        "features",
        "models",
        "segments",
        "activation",
        "measurement",
    }


def test_every_table_asset_documents_its_columns(graph):
    """A table asset names its warehouse table and documents each column with a type and a
    description; the only other asset is the HTML report, a file with a path."""
    files = []
    for node in _nodes(graph):
        name = node.key.to_user_string()
        table = node.metadata.get("dagster/table_name")
        if table is None:
            files.append(name)
            continue
        assert table == f"warehouse.{'.'.join(node.key.path)}", name
        schema = node.metadata["dagster/column_schema"]
        assert len(schema.columns) >= 3, name
        undocumented = [c.name for c in schema.columns if not (c.type and c.description)]
        assert undocumented == [], name
    assert files == ["measurement/report"]
    assert "html" in graph.get(dg.AssetKey(["measurement", "report"])).kinds


def test_column_lineage_names_real_columns_of_real_dependencies(graph):
    """Every derived column listed in COLUMN_LINEAGE is a column of its asset, computed from a
    documented column of an asset it depends on (directly or through the stages between)."""
    assert COLUMN_LINEAGE
    for name, deps_by_column in COLUMN_LINEAGE.items():
        node = graph.get(dg.AssetKey.from_user_string(name))
        lineage = node.metadata["dagster/column_lineage"]
        assert set(lineage.deps_by_column) == set(deps_by_column), name
        columns = {c.name for c in node.metadata["dagster/column_schema"].columns}
        upstream = graph.upstream_key_iterator(node.key)
        ancestors = set(upstream)
        for column, deps in lineage.deps_by_column.items():
            assert column in columns, f"{name}.{column} is not in its column schema"
            for dep in deps:
                assert dep.asset_key in ancestors, f"{name}.{column}: {dep.asset_key} is not upstream"
                dep_columns = {
                    c.name for c in graph.get(dep.asset_key).metadata["dagster/column_schema"].columns
                }
                assert dep.column_name in dep_columns, f"{name}.{column}: {dep.asset_key}.{dep.column_name}"


def test_scheme_and_model_versions_are_asset_metadata(graph):
    """The segment scheme's version rides on its assets' definitions; its change log is an
    asset of its own; every model asset is versioned by its code_version (the registry's key)."""
    for key in (["segments", "assignments"], ["segments", "profiles"], ["segments", "changelog"]):
        assert graph.get(dg.AssetKey(key)).metadata["scheme_version"], key
    changelog = graph.get(dg.AssetKey(["segments", "changelog"]))
    assert {"scheme_version", "change_summary", "previous_version"} <= {
        c.name for c in changelog.metadata["dagster/column_schema"].columns
    }
    assert graph.get(dg.AssetKey(["models", "rfm_scores"])).metadata["segment_map_version"]
