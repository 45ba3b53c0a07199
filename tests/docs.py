"""The variable section of every role README, generated from its meta/argument_specs.yml.

`make docs` (``python -m tests.docs``) rewrites the part of ``roles/<role>/README.md`` between
the two marker comments below and leaves the hand-written prose around it alone. A role
without a README gets one: its title, its description, then the generated section.
``tests/test_docs.py`` fails when a README's section differs from what this would write.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLES = ROOT / "roles"
BEGIN = "<!-- BEGIN GENERATED VARIABLES: `make docs` writes this from meta/argument_specs.yml -->"
END = "<!-- END GENERATED VARIABLES -->"

# Ansible's documentation markup, as Markdown.
_MARKUP = [
    (re.compile(r"[COV]\(([^)]*)\)"), r"`\1`"),
    (re.compile(r"I\(([^)]*)\)"), r"*\1*"),
    (re.compile(r"B\(([^)]*)\)"), r"**\1**"),
    (re.compile(r"U\(([^)]*)\)"), r"\1"),
    (re.compile(r"L\(([^,)]*),\s*([^)]*)\)"), r"[\1](\2)"),
]


def roles() -> list[Path]:
    """Every role folder that has an argument spec (every role must have one)."""
    return sorted(path.parent.parent for path in ROLES.glob("*/meta/argument_specs.yml"))


def _text(value: str | list[str] | None) -> str:
    lines = value if isinstance(value, list) else [value or ""]
    text = " ".join(" ".join(str(line).split()) for line in lines).strip()
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    # Markdown would take <name> outside code spans for an HTML tag and hide it.
    parts = text.split("`")
    parts[::2] = [part.replace("<", "&lt;").replace(">", "&gt;") for part in parts[::2]]
    return "`".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(option: dict[str, Any]) -> str:
    if option.get("required"):
        return "required"
    if "default" not in option:
        return "see `defaults/main.yml`"
    value = option["default"]
    return f"`{value}`" if isinstance(value, str) and value else f"`{json.dumps(value)}`"


def _type(option: dict[str, Any]) -> str:
    kind = option.get("type", "str")
    if "elements" in option:
        kind = f"{kind} of {option['elements']}"
    return kind + (", secret" if option.get("no_log") else "")


def _rows(options: dict[str, Any], prefix: str = "") -> list[str]:
    rows = []
    for name, option in options.items():
        description = _text(option.get("description"))
        if option.get("choices"):
            description += " One of: " + ", ".join(f"`{c}`" for c in option["choices"]) + "."
        rows.append(
            f"| `{prefix}{name}` | {_type(option)} | {_cell(_default(option))} "
            f"| {_cell(description.strip())} |"
        )
        if option.get("options"):
            inner = f"{prefix}{name}[]." if option.get("type") == "list" else f"{prefix}{name}."
            rows += _rows(option["options"], inner)
    return rows


def render(role: Path) -> str:
    """The generated section of one role's README, markers included."""
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    out = [BEGIN]
    seen: dict[str, str] = {}
    for entry, spec in specs.items():
        how = "the role" if entry == "main" else f"`tasks_from: {entry}`"
        out += ["", f"### Entry point `{entry}` ({how})", ""]
        if spec.get("short_description"):
            out.append(_text(spec["short_description"]) + ".")
        for paragraph in spec.get("description") or []:
            out += ["", _text(paragraph)]
        options = spec.get("options") or {}
        key = json.dumps(options, sort_keys=True)
        if not options:
            out += ["", "No variables."]
        elif key in seen:
            out += ["", f"Variables: the same as entry point `{seen[key]}`."]
        else:
            seen[key] = entry
            out += ["", "| Variable | Type | Default | Description |", "|---|---|---|---|"]
            out += _rows(options)
    out += ["", END]
    return "\n".join(out)


def current(readme: str) -> str | None:
    """The generated section a README holds now, or None without markers."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        return None
    return readme[start : end + len(END)]


def write(role: Path) -> bool:
    """Bring one README up to date; True when the file changed."""
    readme_path = role / "README.md"
    section = render(role)
    if readme_path.exists():
        readme = readme_path.read_text()
    else:
        specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
        main = next(iter(specs["argument_specs"].values()))
        readme = f"# {role.name}\n\n{_text(main.get('short_description'))}.\n"
    old = current(readme)
    if old is None:
        new = readme.rstrip("\n") + "\n\n## Variables\n\n" + section + "\n"
    else:
        new = readme.replace(old, section)
    if new == readme and readme_path.exists():
        return False
    readme_path.write_text(new)
    return True


def main() -> int:
    for role in roles():
        if write(role):
            print(f"wrote {role.relative_to(ROOT)}/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
