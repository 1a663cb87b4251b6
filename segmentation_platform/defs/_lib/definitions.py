"""How a group folder turns its assets into a `Definitions`: column lineage and code links,
applied the same way in every group."""

from pathlib import Path

import dagster as dg

from segmentation_platform import settings
from segmentation_platform.defs._lib.metadata import with_column_lineage

REPO_ROOT = Path(__file__).resolve().parents[3]


def _with_code_links(assets: list) -> list:
    linked = dg.with_source_code_references(assets)
    # Point the UI's source links at a hosted repository when one is configured.
    if settings.GIT_URL:
        linked = dg.link_code_references_to_git(
            linked,
            git_url=settings.GIT_URL,
            git_branch=settings.GIT_BRANCH,
            file_path_mapping=dg.AnchorBasedFilePathMapping(
                local_file_anchor=REPO_ROOT, file_anchor_path_in_repository=""
            ),
        )
    return linked


def group_definitions(assets: list) -> dg.Definitions:
    """One asset group's definitions (assets with their checks); resources come from the top level."""
    return dg.Definitions(assets=_with_code_links(with_column_lineage(assets)))
