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


MAX_MODULE_LINES = 500
COHESIVE_MARK = "one cohesive algorithm"


def test_runtime_modules_stay_small_unless_they_say_why():
    """docs/architecture.md: no core or defs module over ~500 lines, unless its docstring says it
    is one cohesive algorithm (then splitting it would scatter one derivation over files)."""
    offenders = []
    for root in (PACKAGE / "core", PACKAGE / "defs"):
        for path in root.rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            lines = text.count("\n")
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if lines > MAX_MODULE_LINES and COHESIVE_MARK not in docstring.lower():
                offenders.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert offenders == []


def test_no_defs_module_reads_config_or_the_environment_at_import():
    """Factories take their config (defs/_lib/config.py loads it once); only settings reads the environment."""
    offenders = []
    for path in (PACKAGE / "defs").rglob("*.py"):
        if path.relative_to(PACKAGE / "defs").as_posix() in {"_lib/config.py"}:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if isinstance(value, ast.Call):
                name = ast.unparse(value.func)
                if name.split(".")[-1].startswith("load_") or "environ" in name:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)[:80]}")
        if "os.environ" in ast.unparse(tree):
            offenders.append(f"{path.relative_to(REPO)}: reads os.environ")
    assert offenders == []


def _packages(root: Path) -> list[str]:
    return sorted(
        p.name for p in root.iterdir() if (p / "__init__.py").exists() and not p.name.startswith("_")
    )


def test_tests_mirror_the_layout():
    """tests/core/<domain>/ for every core domain, tests/defs/<group>/ for every asset group."""
    core = [d for d in _packages(PACKAGE / "core") if d not in {"warehouse", "config"}]
    models = [f"models/{d}" for d in _packages(PACKAGE / "core" / "models")]
    missing = [
        *(f"tests/core/{d}" for d in [*core, *models] if not (REPO / "tests" / "core" / d).is_dir()),
        *(
            f"tests/defs/{g}"
            for g in _packages(PACKAGE / "defs")
            if not (REPO / "tests" / "defs" / g).is_dir()
        ),
    ]
    assert missing == []


def test_the_docs_name_every_package_and_group():
    """docs/architecture.md's package map and the README's Layout list what is really there."""
    architecture = (REPO / "docs" / "architecture.md").read_text()
    readme_layout = (REPO / "README.md").read_text().split("## Layout")[1].split("\n## ")[0]
    core = _packages(PACKAGE / "core")
    groups = _packages(PACKAGE / "defs")
    assert [d for d in core if f"    {d}/" not in architecture] == []
    assert [d for d in _packages(PACKAGE / "core" / "models") if f"{d}/" not in architecture] == []
    assert [d for d in [*core, *groups] if f"{d}/" not in readme_layout] == []
    assert [m for m in ("catalog.py",) if m not in architecture or m not in readme_layout] == []
