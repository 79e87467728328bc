"""The documentation: the site builds strictly, its generated parts come from the code, every command a page
shows is run by a test (or listed with the reason it cannot be), and nothing cites a file outside the project."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli import PROJECT_ROOT, run_cli
from doc_commands import (
    CI_SCRIPT,
    NOT_RUN,
    RUN_BY_CI,
    commands_of,
    page_command,
    page_commands,
)

sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
import mkdocs_hooks  # noqa: E402  (the site's hook lives in scripts/, not in the package)

TESTS = PROJECT_ROOT / "tests"
# Files outside the project that code and tests once cited; spelt in pieces so this file does not cite them.
OUTSIDE = ("REFERENCE" + ".md", "INTERFACE" + ".md", "../" + "shared")


def _site_build(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as CI builds it: ``mkdocs build --strict`` (any warning, broken link or missing page fails)."""
    site = tmp_path_factory.mktemp("site")
    done = _site_build(site)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return site


def test_the_site_builds_strictly_with_every_page_of_the_nav(site):
    import yaml

    nav = yaml.safe_load((PROJECT_ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    for entry in nav:
        (page,) = entry.values()
        built = site / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert built.is_file(), page
    assert "<!-- generated:" not in "".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))


def test_the_configuration_page_lists_every_setting_of_the_help_page(site):
    """Every setting ``--help`` lists (parsed from its output, not from the schema) has a row on the page."""
    done = run_cli(None, "--help")
    assert done.returncode == 0, done.describe()
    listed = {line.split()[0].split("=")[0] for line in done.stdout.splitlines() if line.startswith("  ") and "=" in line.split()[0]}
    assert {"flip_test", "data.skip_corrupt_s9", "trainer.timeout_s", "logger.tracking_uri"} <= listed
    page = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    missing = sorted(name for name in listed if f"<code>{name}</code>" not in page)
    assert not missing, missing
    # The groups table names each option file shipped in conf/.
    for option in ("XS", "auto", "ddp", "mlflow", "sample"):
        assert f"<code>{option}</code>" in page, option


def test_the_code_tour_names_every_module_of_the_package(site):
    page = (site / "code-tour" / "index.html").read_text(encoding="utf-8")
    package = PROJECT_ROOT / "src" / "convnextpose_eval"
    modules = [p for p in package.rglob("*.py") if p.name != "__init__.py" and "conf" not in p.relative_to(package).parts]
    assert len(modules) > 50
    assert not [str(p) for p in modules if f"<code>{p.name}</code>" not in page]


def test_a_room_missing_from_the_tour_stops_the_build(tmp_path):
    package = tmp_path / "convnextpose_eval"
    (package / "common").mkdir(parents=True)
    (package / "common" / "__init__.py").write_text("")
    (package / "common" / "atomic.py").write_text('"""Write whole files."""\n')
    assert "| `common/` | `atomic.py` | Write whole files. |" in mkdocs_hooks.modules_table(package)
    (package / "plans").mkdir()
    (package / "plans" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match=r"rooms plans are not in the code tour's order"):
        mkdocs_hooks.modules_table(package)


def test_a_schema_becomes_a_field_table(tmp_path):
    """A hand-written schema with the constructs the package's schemas use: $defs and $ref, required fields,
    arrays, named-by-pattern entries, alternatives with null."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "results.json",
        "description": "One run's figures.",
        "type": "object",
        "required": ["schema_version", "metrics"],
        "properties": {
            "schema_version": {"const": 2, "description": "the schema this file follows"},
            "metrics": {"$ref": "#/$defs/figures"},
            "per_action": {"type": "object", "patternProperties": {"^[A-Za-z]+$": {"$ref": "#/$defs/figures"}}},
            "checkpoint": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"sha256": {"type": "string", "description": "hex"}}}]},
            "bbox": {"type": "array", "items": {"type": "number", "description": "x, y, w, h"}},
        },
        "$defs": {"figures": {"type": "object", "description": "mm", "required": ["mpjpe"], "properties": {"mpjpe": {"type": ["number", "null"], "description": "mean joint error"}}}},
    }
    (tmp_path / "results.schema.json").write_text(json.dumps(schema))
    (tmp_path / "notes.json").write_text("{}")  # not a schema file: left out
    table = mkdocs_hooks.result_schemas(tmp_path)
    assert table.startswith("### `results`\n\n**results.json**\n\nOne run's figures.\n")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `schema_version` | always 2 | yes | the schema this file follows |",
        "| `metrics` | object | yes | mm |",
        "| `metrics.mpjpe` | number or null | yes | mean joint error |",
        "| `per_action` | object |  |  |",
        "| `per_action.<^[A-Za-z]+$>` | object |  | mm |",
        "| `per_action.<^[A-Za-z]+$>.mpjpe` | number or null | yes | mean joint error |",
        "| `checkpoint` | null or object |  |  |",
        "| `checkpoint.sha256` | string |  | hex |",
        "| `bbox` | array |  |  |",
        "| `bbox[]` | number |  | x, y, w, h |",
    ]


def test_an_unknown_generated_part_stops_the_build():
    with pytest.raises(ValueError, match=r"^clusters.md: unknown generated part 'setting'"):
        mkdocs_hooks.expand("text\n<!-- generated: setting -->\n", "clusters.md")


def test_the_results_format_page_has_a_section_for_every_shipped_schema(site):
    page = (site / "results-format" / "index.html").read_text(encoding="utf-8")
    for path in mkdocs_hooks.schema_files():
        assert f"<code>{path.name.removesuffix('.schema.json')}</code>" in page, path


# --------------------------------------------------------------------------- commands on the pages


def _strings(node: ast.AST, names: dict[str, set[str]]) -> set[str]:
    """The strings an expression can be: a literal, a name assigned literals, either branch of ``a if c else b``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Name):
        return names.get(node.id, set())
    if isinstance(node, ast.IfExp):
        return _strings(node.body, names) | _strings(node.orelse, names)
    return set()


def _run_by_tests() -> set[str]:
    """The commands the tests pass to ``page_command`` (as literals or through names assigned literals)."""
    run: set[str] = set()
    for path in TESTS.glob("*.py"):
        if path.name == Path(__file__).name:
            continue  # this module's calls are examples of the helper, not runs
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: dict[str, set[str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names.setdefault(target.id, set()).add(node.value.value)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "page_command" and node.args:
                run |= _strings(node.args[0], names)
    return run


def test_every_command_on_a_page_is_run_by_a_test_or_listed_with_its_reason():
    shown = page_commands()
    assert len(shown) > 25 and "python run_eval.py experiment=demo variant=S" in shown
    quoted = _run_by_tests()
    unrun = {command: pages for command, pages in shown.items() if command not in quoted and command not in NOT_RUN and command not in RUN_BY_CI}
    assert not unrun, f"commands no test runs (run them with doc_commands.page_command, or list them in NOT_RUN with why): {unrun}"
    stale = sorted(command for command in (*NOT_RUN, *RUN_BY_CI) if command not in shown)
    assert not stale, f"listed but on no page: {stale}"
    both = sorted(command for command in NOT_RUN if command in quoted)
    assert not both, f"run by a test yet listed as not run: {both}"


def test_ci_runs_its_commands_verbatim():
    script = CI_SCRIPT.read_text(encoding="utf-8").splitlines()
    for command in RUN_BY_CI:
        assert any(line == command or line.endswith(f" {command}") or f"'{command}'" in line for line in script), command


def test_the_readme_setup_commands_stand_alone_on_their_lines():
    """CI and newcomers copy them whole: each is an indented line of its own in the README."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    for command in RUN_BY_CI[:2]:
        assert f"    {command}" in readme, command
    assert len(readme) <= 150


def test_commands_are_read_from_shell_blocks_only(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text `inline cmd`\n\n```bash\nfirst a \\\n  b\n# a comment\n\nsecond\n```\n\n```python\nprint(1)\n```\n\n"
                    "```text\nDATA/\n```\n\n    indented, but not the README\n")  # fmt: skip
    assert commands_of(page) == ["first a b", "second"]


def test_a_command_taken_off_its_page_fails_the_test_that_runs_it():
    with pytest.raises(AssertionError, match="no page shows the command `python run_eval.py variant=XL`"):
        page_command("python run_eval.py variant=XL")
    words = page_command("python -m convnextpose_eval.compare SWEEP/0_XS SWEEP/3_L --top 3", SWEEP=Path("/runs/s"))
    assert words == ["python", "-m", "convnextpose_eval.compare", "/runs/s/0_XS", "/runs/s/3_L", "--top", "3"]


# --------------------------------------------------------------------------- nothing outside the project


def test_nothing_in_the_project_cites_a_file_outside_it():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")  # fmt: skip
    files = [PROJECT_ROOT / name for name in listed if name]
    assert len(files) > 100
    citing = []
    for path in files:
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        citing += [f"{path.relative_to(PROJECT_ROOT)}: {name}" for name in OUTSIDE if name in text]
    assert not citing, citing
