"""Every role documents its variables in one place (meta/argument_specs.yml), and its README
shows exactly that: the section between the markers is what `make docs` writes."""

from __future__ import annotations

import pytest
import yaml

from tests.docs import ROLES, current, render, roles


def test_every_role_has_an_argument_spec():
    assert {path.name for path in ROLES.iterdir() if path.is_dir()} == {r.name for r in roles()}


@pytest.mark.parametrize("role", roles(), ids=lambda role: role.name)
def test_readme_variables_match_the_argument_spec(role):
    readme = role / "README.md"
    assert readme.exists(), f"{readme} is missing: run `make docs`"
    assert current(readme.read_text()) == render(role), (
        f"{readme}'s variable section differs from meta/argument_specs.yml: run `make docs`"
    )


@pytest.mark.parametrize("role", roles(), ids=lambda role: role.name)
def test_every_default_is_documented(role):
    defaults = role / "defaults" / "main.yml"
    if not defaults.exists():
        pytest.skip("no defaults")
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    documented = {name for spec in specs.values() for name in spec.get("options") or {}}
    undocumented = set(yaml.safe_load(defaults.read_text()) or {}) - documented
    assert not undocumented, f"{role.name}: defaults missing from argument_specs: {undocumented}"
