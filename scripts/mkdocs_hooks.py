"""MkDocs hook: the docs site's generated parts, made from the project's own code at build time.

A page asks for a part with a marker line of its own, ``<!-- generated: NAME -->``; ``NAME`` is one of
``settings`` (every setting: its default as the shipped configs compose it, and the schema's one-line
doc, as ``--help`` prints it), ``groups`` (each config group's options and the comment their files open with),
``modules`` (every module of the package, room by room, with its docstring's first line) and ``result-schemas`` (a field table of every JSON Schema the package ships under
``results/schemas/``). An unknown marker stops the build, so a page cannot ask for something that is not made.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", flags=re.MULTILINE)
SCHEMA_PACKAGE = "convnextpose_eval.results"
SCHEMA_FOLDER = "schemas"
SCHEMA_SUFFIX = ".schema.json"


def _cell(text: object) -> str:
    """``text`` made safe for one Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(plain: Any, name: str) -> str:
    """The value at dotted ``name`` in the unresolved composed config, as a command line writes it."""
    node = plain
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return ""
        node = node[part]
    if node is None:
        return "null"
    if isinstance(node, bool):
        return str(node).lower()
    if isinstance(node, (dict, list)):
        return json.dumps(node).replace('"', "")
    return str(node)


def settings_table() -> str:
    """Every setting, one table per section, from ``config.help.described_settings`` and the shipped configs."""
    from omegaconf import OmegaConf

    from convnextpose_eval.config.compose import compose_config
    from convnextpose_eval.config.help import described_settings

    # Unresolved: paths show their interpolations (``${oc.env:...}``), never the builder's folders.
    plain = OmegaConf.to_container(compose_config(), resolve=False, enum_to_str=True)
    out: list[str] = []
    general: list[str] = []
    header = ["| setting | default | what it does |", "|---|---|---|"]
    for name, doc, section in described_settings():
        if section and "." not in name:
            out += ["", f"### `{name}`", "", _cell(doc), "", *header]
            continue
        if section:
            continue
        default = "" if "<" in name else _default(plain, name)
        row = f"| `{_cell(name)}` | `{_cell(default)}` | {_cell(doc)} |" if default else f"| `{_cell(name)}` | | {_cell(doc)} |"
        (general if "." not in name else out).append(row)
    return "\n".join(["### Top-level settings", "", *header, *general, *out]) + "\n"


def _leading_comment(text: str) -> str:
    """The comment block a config file opens with (Hydra's ``@package`` line aside): what the option is."""
    words: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment = line.lstrip("#").strip()
        if not comment.startswith("@package"):
            words.append(comment)
    return " ".join(words)


def groups_table() -> str:
    """Each config group shipped in ``convnextpose_eval.conf`` and its options, described by their own files."""
    conf = resources.files("convnextpose_eval.conf")
    rows = ["| group | option | what it is |", "|---|---|---|"]
    for group in sorted((g for g in conf.iterdir() if g.is_dir() and g.name not in ("hydra", "__pycache__")), key=lambda g: g.name):
        for option in sorted((o for o in group.iterdir() if o.name.endswith(".yaml")), key=lambda o: o.name):
            rows.append(f"| `{group.name}` | `{option.name[:-5]}` | {_cell(_leading_comment(option.read_text(encoding='utf-8')))} |")
    return "\n".join(rows) + "\n"


def _resolve(schema: dict, node: dict) -> dict:
    """``node`` with a local ``$ref`` (``#/$defs/...``) followed."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"schema reference {ref!r} is not local")
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type_of(node: dict) -> str:
    kinds = node.get("type")
    if kinds is None and "enum" in node:
        return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
    if kinds is None and "const" in node:
        return f"always {json.dumps(node['const'])}"
    if kinds is None and ("anyOf" in node or "oneOf" in node):
        return " or ".join(_type_of(option) for option in node.get("anyOf", node.get("oneOf", [])))
    if isinstance(kinds, list):
        return " or ".join(kinds)
    return str(kinds or "any")


def schema_rows(schema: dict, node: dict, path: str, required: bool, rows: list[str], depth: int = 0) -> None:
    """One table row for the field at ``path`` (none for the document itself), then one per field under it."""
    node = _resolve(schema, node)
    if path:
        rows.append(f"| `{_cell(path)}` | {_cell(_type_of(node))} | {'yes' if required else ''} | {_cell(node.get('description', ''))} |")
    if depth < 10:
        _field_rows(schema, node, path, rows, depth)


def _field_rows(schema: dict, node: dict, path: str, rows: list[str], depth: int) -> None:
    """The rows of the fields ``node`` holds: properties, named-by-pattern entries, array items, alternatives."""
    for option in node.get("anyOf", []) + node.get("oneOf", []):
        _field_rows(schema, _resolve(schema, option), path, rows, depth + 1)
    needed = set(node.get("required", []))
    for key, child in node.get("properties", {}).items():
        schema_rows(schema, child, f"{path}.{key}" if path else key, key in needed, rows, depth + 1)
    for pattern, child in node.get("patternProperties", {}).items():
        schema_rows(schema, child, f"{path}.<{pattern}>" if path else f"<{pattern}>", False, rows, depth + 1)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        schema_rows(schema, extra, f"{path}.<name>" if path else "<name>", False, rows, depth + 1)
    items = node.get("items")
    if isinstance(items, dict):
        schema_rows(schema, items, f"{path}[]", False, rows, depth + 1)


def schema_section(file_name: str, schema: dict) -> str:
    """One schema file as a heading, its title and description, and its field table."""
    rows = ["| field | type | required | what it holds |", "|---|---|---|---|"]
    schema_rows(schema, schema, "", True, rows)
    lines = [f"### `{file_name}`", ""]
    if schema.get("title"):
        lines += [f"**{schema['title']}**", ""]
    if schema.get("description"):
        lines += [schema["description"], ""]
    if schema.get("$id"):
        lines += [f"Schema id: `{schema['$id']}`", ""]
    return "\n".join([*lines, *rows]) + "\n"


def schema_files(folder: Path | None = None) -> list[Path]:
    """The JSON Schemas the package ships (``results/schemas/<file>.schema.json``), by name."""
    if folder is None:
        folder = Path(str(resources.files(SCHEMA_PACKAGE) / SCHEMA_FOLDER))
    return sorted(folder.glob(f"*{SCHEMA_SUFFIX}")) if folder.is_dir() else []


def result_schemas(folder: Path | None = None) -> str:
    """Every shipped schema's section; a plain sentence when the package ships none."""
    files = schema_files(folder)
    if not files:
        return "*The package ships no JSON Schema under `results/schemas/` in this version.*\n"
    return "\n".join(schema_section(path.name[: -len(SCHEMA_SUFFIX)], json.loads(path.read_text(encoding="utf-8"))) for path in files)


# The package's rooms in data-flow order (docs/code-tour.md): a module imports only from its own room or earlier ones.
ROOMS = ("common", "config", "network", "checkpoint", "data", "backends", "model", "metrics", "results", "report",
         "sample", "run", "deploy", "cli")  # fmt: skip


def _summary(path: Path) -> str:
    """The first line of a module's docstring: what the module says it is for."""
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().split("\n")[0]


def modules_table(package: Path | None = None) -> str:
    """Every module of the package, room by room in data-flow order, with its docstring's first line.

    A room missing from :data:`ROOMS` stops the build, so the tour cannot silently leave one out."""
    if package is None:
        package = Path(str(resources.files("convnextpose_eval")))
    rooms = sorted(p.name for p in package.iterdir() if (p / "__init__.py").is_file() and p.name != "conf")
    unknown = sorted(set(rooms) - set(ROOMS))
    if unknown:
        raise ValueError(f"{package}: rooms {', '.join(unknown)} are not in the code tour's order (scripts/mkdocs_hooks.py ROOMS)")
    rows = ["| room | module | what it is for |", "|---|---|---|"]
    for room in (r for r in ROOMS if r in rooms):
        for module in sorted((package / room).glob("*.py")):
            if module.name != "__init__.py":
                rows.append(f"| `{room}/` | `{module.name}` | {_cell(_summary(module))} |")
    for module in sorted(package.glob("*.py")):
        rows.append(f"| top level | `{module.name}` | {_cell(_summary(module))} |")
    return "\n".join(rows) + "\n"


GENERATORS = {"settings": settings_table, "groups": groups_table, "result-schemas": result_schemas, "modules": modules_table}


def expand(markdown: str, where: str) -> str:
    """``markdown`` with each marker replaced by what it names; an unknown name is an error naming ``where``."""

    def made(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{where}: unknown generated part {name!r} (known: {', '.join(sorted(GENERATORS))})")
        return GENERATORS[name]()

    return MARKER.sub(made, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs' hook: expand the markers of each page before it is rendered."""
    return expand(markdown, page.file.src_uri)
