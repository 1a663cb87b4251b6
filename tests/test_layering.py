"""The one rule per layer (docs/architecture.md), checked on the source tree."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "segmentation_platform"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_module_imports_dagster_private_modules():
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for root in (PACKAGE, REPO / "tests", REPO / "benchmarks")
        for path in root.rglob("*.py")
        for name in _imports(path)
        if name.startswith("dagster._") or ".".join(name.split(".")[:2]).startswith("dagster_duckdb._")
    ]
    assert offenders == []


def test_core_imports_neither_dagster_nor_the_generator():
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in (PACKAGE / "core").rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in {"dagster", "dagster_duckdb"}
        or name.startswith("segmentation_platform.synthetic")
    ]
    assert offenders == []


def test_the_runtime_package_loads_without_the_generator():
    """Loading the Definitions (what a code server does) never imports segmentation_platform.synthetic."""
    code = (
        "import sys, segmentation_platform.definitions; "
        "sys.exit(any(m.startswith('segmentation_platform.synthetic') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=REPO).returncode == 0


def test_ruff_bans_dagster_in_core():
    """Ruff's banned-api rule fires on a core module importing Dagster (checked from stdin, as if
    the file were `core/_layering_probe.py`; nothing is written into the tree)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--select",
            "TID251",
            "--stdin-filename",
            "segmentation_platform/core/_layering_probe.py",
            "-",
        ],
        cwd=REPO,
        input="import dagster\n",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "TID251" in result.stdout
