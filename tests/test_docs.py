"""The documentation site builds with `mkdocs build --strict`, documents every public
name, and the files it is made of say what is true.

The site is built from a copy of `mkdocs.yml`, `docs/` and `examples/` in a temporary
folder, so that the build leaves the checkout as it was, with the gallery's examples
not run (`JACSCOPE_DOCS_RUN_EXAMPLES=false`): `tests/test_examples.py` runs them, and
`make docs` runs them at full size for the figures.
"""

import ast
import html.parser
import os
import pathlib
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "src" / "jacscope"
PRIVATE_SUBPACKAGES = {"cli"}  # the command line: `jacscope --help` documents it


def _reexports(init: pathlib.Path) -> list[str]:
    """The names an `__init__.py` re-exports: `from m import x as x`, `import m as m`,
    and the public names it defines itself."""
    names = []
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            names += [a.name.split(".")[-1] for a in node.names if a.asname == a.name]
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [
                t.id for t in node.targets if isinstance(t, ast.Name) and not t.id.startswith("_")
            ]
    return names


def public_subpackages() -> list[str]:
    """Every subpackage of jacscope that is not private: each must have an API page."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(PACKAGE)])
        if info.ispkg and not info.name.startswith("_") and info.name not in PRIVATE_SUBPACKAGES
    )


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    """Build the site with --strict into a temporary folder; fail on any warning."""
    work = tmp_path_factory.mktemp("docs")
    shutil.copy(ROOT / "mkdocs.yml", work / "mkdocs.yml")
    shutil.copytree(DOCS, work / "docs", ignore=shutil.ignore_patterns("generated"))
    shutil.copytree(
        ROOT / "examples",
        work / "examples",
        ignore=shutil.ignore_patterns("__pycache__", "*_small", "*.npz"),
    )
    (work / "src").symlink_to(ROOT / "src")
    env = {
        **os.environ,
        "JACSCOPE_DOCS_RUN_EXAMPLES": "false",
        "JACSCOPE_EXAMPLE_SIZE": "small",
        "NO_MKDOCS_2_WARNING": "1",
    }
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(work / "mkdocs.yml")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    warnings = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)
    return work / "site"


def _api_ids(site: pathlib.Path) -> set[str]:
    parser = _Ids()
    for page in (site / "api").rglob("*.html"):
        parser.feed(page.read_text(encoding="utf-8"))
    return parser.ids


def test_every_public_subpackage_has_a_page(site):
    nav = (ROOT / "mkdocs.yml").read_text()
    ids = _api_ids(site)
    for name in public_subpackages():
        assert (DOCS / "api" / f"{name}.md").exists(), f"no docs/api/{name}.md"
        assert f"api/{name}.md" in nav, f"docs/api/{name}.md is not in mkdocs.yml's nav"
        assert f"jacscope.{name}" in ids, f"jacscope.{name} has no API entry"


def test_every_public_name_has_an_entry(site):
    ids = _api_ids(site)
    missing = []
    for sub in public_subpackages():
        for name in _reexports(PACKAGE / sub / "__init__.py"):
            if f"jacscope.{sub}.{name}" not in ids:
                missing.append(f"jacscope.{sub}.{name}")
    # a top-level name is documented at the top level or on the page of the subpackage
    # that re-exports the same object (docs/api/index.md links it there)
    import jacscope

    subpackages = public_subpackages()
    for name in _reexports(PACKAGE / "__init__.py"):
        if name in subpackages or f"jacscope.{name}" in ids:
            continue
        obj = getattr(jacscope, name)
        homes = [
            f"jacscope.{sub}.{name}"
            for sub in subpackages
            if getattr(getattr(jacscope, sub, None), name, None) is obj
        ]
        if not any(home in ids for home in homes):
            missing.append(f"jacscope.{name}")
    assert not missing, "public names without an API entry: " + ", ".join(missing)


def test_getting_started_code_is_the_tested_code():
    """The page's Python blocks are README's, which tests/test_readme.py and
    tests/test_lipschitz_jaxpr.py run (so they are not run twice)."""
    pattern = r"```python\n(.*?)```"
    page = re.findall(pattern, (DOCS / "getting-started.md").read_text(), flags=re.S)
    readme = re.findall(pattern, (ROOT / "README.md").read_text(), flags=re.S)
    assert page, "docs/getting-started.md has no python example"
    for block in page:
        assert block in readme, f"a python block of getting-started.md is not README's:\n{block}"


def test_benchmark_tables_keep_their_commands():
    """Every printed table on the benchmarks page sits under the command that printed
    it, and every script it names exists."""
    text = (DOCS / "benchmarks.md").read_text()
    scripts = set(re.findall(r"python (benchmarks/\w+\.py)", text))
    assert scripts, "docs/benchmarks.md names no benchmark script"
    for script in scripts:
        assert (ROOT / script).exists(), f"docs/benchmarks.md names {script}, which is gone"
    position = 0
    for match in re.finditer(r"^```\n", text, flags=re.M):
        if match.start() < position:
            continue  # the closing fence of the block before
        before = text[: match.start()]
        assert re.search(r"python benchmarks/\w+\.py", before), (
            f"a table at line {before.count(chr(10)) + 1} comes before any command"
        )
        position = text.index("```", match.end()) + 3
    for name in ("operators", "training_jacobian", "training_jacobian_scale", "coverage"):
        assert f"python benchmarks/{name}.py" in text


def test_citation_file():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    init = (PACKAGE / "__init__.py").read_text()
    (version,) = re.findall(r'^__version__ = "(.+)"', init, flags=re.M)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software" and cff["title"] == "jacscope"
    assert str(cff["version"]) == project.get("version", version)
    assert cff["license"] == project["license"] == "Apache-2.0"
    assert cff["authors"] == [{"name": "jacscope developers"}]
    assert cff["message"]
    (paper,) = cff["references"]
    assert paper["title"] == "Understanding Gradient Descent through the Training Jacobian"
    assert [a["family-names"] for a in paper["authors"]] == ["Belrose", "Scherlis"]
    assert "2412.07003" in paper["doi"] and "2412.07003" in paper["url"]


def test_changelog_has_an_unreleased_section():
    text = (DOCS / "changelog.md").read_text()
    assert re.search(r"^## Unreleased$", text, flags=re.M)
