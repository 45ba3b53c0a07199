"""The prose stays true: what a README or a page of docs/ names must exist in the repo.

Checked in every tracked Markdown file:
- every repo path written in backticks exists (`<placeholder>` parts match any name; a path
  git ignores is made at run time, and the few files an operator makes are listed below);
- every Molecule scenario named exists;
- every inventory group named is a group of an inventory or a scenario;
- every Unix account named is one a role or an inventory makes, or Debian's own;
- every `<role>_...` variable named is defined by some role, inventory, playbook or scenario.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Files the production steps have an operator create (docs/production.md), not tracked
# and not ignored: the vault (committed encrypted) and the first deploy's record.
OPERATOR_FILES = (
    "inventories/production/group_vars/all/vault.yml",
    "inventories/production/host_vars/*/prefect_deployment.yml",
)
# Accounts Debian makes (the base system, postgresql-15, redis-server).
DEBIAN_ACCOUNTS = {"root", "nobody", "www-data", "postgres", "redis"}
# Words that come before "scenario" without naming one.
NOT_SCENARIOS = {"a", "every", "its", "no", "one", "other", "own", "same", "the", "this", "that"}

CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
PLACEHOLDER = re.compile(r"<[^<>]+>")
OWN_SCENARIO = re.compile(r"\b(?:[Tt]he|[Ii]ts) Molecule scenario\b")


def tracked(pattern: str = "") -> list[str]:
    args = ["git", "ls-files", "-z"] + ([pattern] if pattern else [])
    out = subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [name for name in out.split("\0") if name and (ROOT / name).exists()]


@cache
def tracked_paths() -> frozenset[str]:
    """Every tracked file and every folder above one."""
    paths = set()
    for name in tracked():
        parts = name.split("/")
        paths.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return frozenset(paths)


def markdown_files() -> list[str]:
    return tracked("*.md")


def is_ignored(path: str) -> bool:
    """Whether git ignores the path: .gitignore is the one list of what runs create."""
    result = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, check=False
    )
    return result.returncode == 0


def path_candidates(text: str) -> list[str]:
    """Backticked spans that are written as repo paths: no spaces outside a placeholder,
    not absolute, not a URL, and a first part that is a tracked top-level name (or a
    hidden folder)."""
    top = {path.split("/")[0] for path in tracked_paths()}
    found = []
    for span in CODE_SPAN.findall(text):
        bare = PLACEHOLDER.sub("x", span)
        if " " in bare or "://" in bare or bare.startswith(("/", "-", "~")):
            continue
        if "/" in bare and (bare.split("/")[0] in top or bare.startswith(".")):
            found.append(span.rstrip("/"))
    return found


def instances(parts: list[str], done: str = "") -> list[str]:
    """The paths a span with placeholders can stand for: a placeholder takes the name of
    each tracked entry at its place, or a name made at run time ("x")."""
    if not parts:
        return [done]
    head, rest = parts[0], parts[1:]
    if PLACEHOLDER.fullmatch(head):
        prefix = f"{done}/" if done else ""
        names = {p[len(prefix) :].split("/")[0] for p in tracked_paths() if p.startswith(prefix)}
        choices = [*sorted(names - {""}), "x"]
    else:
        choices = [PLACEHOLDER.sub("x", head)]
    paths = []
    for name in choices:
        paths += instances(rest, f"{done}/{name}" if done else name)
    return paths


def made_at_run_time(path: str) -> bool:
    """Ignored by git (itself or as part of an ignored folder), or made by an operator."""
    return (
        is_ignored(path)
        or is_ignored(f"{path}/x")
        or any(fnmatch.fnmatchcase(path, wanted) for wanted in OPERATOR_FILES)
    )


def path_exists(span: str, base: str) -> bool:
    for start in ("", base) if base else ("",):
        spelled = f"{start}/{span}" if start else span
        for path in instances(spelled.split("/")):
            if path in tracked_paths() or made_at_run_time(path):
                return True
    return False


@pytest.mark.parametrize("name", markdown_files())
def test_every_backticked_repo_path_exists(name):
    base = str(Path(name).parent).replace(".", "")
    text = (ROOT / name).read_text()
    missing = [span for span in path_candidates(text) if not path_exists(span, base)]
    assert not missing, f"{name} names paths that do not exist: {missing}"


# --- What the repo defines ----------------------------------------------------------
def load_yaml_docs(name: str) -> list:
    try:
        return list(yaml.safe_load_all((ROOT / name).read_text()))
    except yaml.YAMLError:
        return []  # a Jinja template with a .yml name


def keys_of(node: object) -> set[str]:
    if isinstance(node, dict):
        return {str(k) for k in node} | {k for v in node.values() for k in keys_of(v)}
    if isinstance(node, list):
        return {k for v in node for k in keys_of(v)}
    return set()


@cache
def roles() -> frozenset[str]:
    return frozenset(path.name for path in (ROOT / "roles").iterdir() if path.is_dir())


@cache
def variables() -> frozenset[str]:
    """Every name a YAML file of the repo defines (defaults, vars, argument specs,
    inventories, playbooks, scenarios, set_fact) or registers."""
    names: set[str] = set()
    for name in tracked("*.yml"):
        for doc in load_yaml_docs(name):
            names |= keys_of(doc)
        names |= set(re.findall(r"^\s*register:\s*(\w+)", (ROOT / name).read_text(), re.M))
    return frozenset(names)


@cache
def groups() -> frozenset[str]:
    names = {"all", "ungrouped"}
    for name in tracked("inventories/*/hosts.yml"):
        for doc in load_yaml_docs(name):
            names |= set(doc["all"].get("children") or {})
    for name in tracked("*molecule.yml"):
        for doc in load_yaml_docs(name):
            for platform in (doc or {}).get("platforms") or []:
                names |= set(platform.get("groups") or [])
    return frozenset(names)


@cache
def scenarios() -> frozenset[str]:
    """Scenario names, and the roles that have one (`the nginx_edge scenario`)."""
    names = set()
    for name in tracked("roles/*/molecule/*/molecule.yml"):
        parts = name.split("/")
        names |= {parts[1], parts[3]}
    return frozenset(names)


@cache
def accounts() -> frozenset[str]:
    """The Unix users and groups the played roles run as (an option documented as a
    "System user", and its `_group`), the inventories' SSH users and Debian's own."""
    played = set(re.findall(r"role: (\w+)", (ROOT / "site.yml").read_text()))
    names = set(DEBIAN_ACCOUNTS)
    for role in played:
        specs = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())
        options = {
            k: v for spec in specs["argument_specs"].values() for k, v in spec["options"].items()
        }
        for option, spec in options.items():
            description = spec.get("description") or ""
            description = " ".join(description) if isinstance(description, list) else description
            if option.endswith("_user") and description.startswith("System user"):
                group = options.get(option.removesuffix("_user") + "_group", {})
                names |= {str(spec["default"]), str(group.get("default", spec["default"]))}
    for name in tracked("inventories/*"):
        for doc in load_yaml_docs(name) if name.endswith(".yml") else []:
            if isinstance(doc, dict) and "ansible_user" in doc:
                names.add(doc["ansible_user"])
    return frozenset(names)


# --- What the prose names -----------------------------------------------------------
def named_scenarios(text: str) -> set[str]:
    names = set(re.findall(r"\b(?:the|a) `?([a-z][a-z0-9_]*)`? scenario\b", text))
    names |= set(re.findall(r"molecule test[^`\n]*? -s ([\w-]+)", text))
    return names - NOT_SCENARIOS


def named_groups(text: str) -> set[str]:
    names = set(re.findall(r"`(\w+)` (?:group|inventory group)\b", text))
    names |= set(re.findall(r"\bgroups? `(\w+)`", text))
    names |= set(re.findall(r"`(\w+)` has (?:a|no) host", text))
    for listing in re.findall(r"groups? [^.`]*?: ((?:`\w+`(?:, | and |,\s+))*`\w+`)", text):
        names |= set(re.findall(r"`(\w+)`", listing))
    return names


def named_accounts(text: str) -> set[str]:
    names = set(re.findall(r"\broot:([a-z][\w-]*)\b", text))
    names |= set(re.findall(r"`([a-z][\w-]*)` account", text))
    names |= set(re.findall(r"\bas `([a-z][\w-]*)` with sudo", text))
    names |= set(re.findall(r"runuser -u ([a-z][\w-]*)", text))
    return names


def named_role_variables(text: str) -> set[str]:
    prefixes = "|".join(sorted(roles(), key=len, reverse=True))
    return set(re.findall(rf"(?<![\w/.-])((?:{prefixes})_[a-z0-9_]+\*?)(?![\w*])", text))


def undefined_role_variables(names: set[str]) -> list[str]:
    return sorted(
        name
        for name in names
        if not any(fnmatch.fnmatchcase(defined, name) for defined in variables())
    )


@pytest.mark.parametrize("name", markdown_files())
def test_every_scenario_group_and_account_named_exists(name):
    text = (ROOT / name).read_text()
    named = named_scenarios(text)
    if (role := re.fullmatch(r"roles/(\w+)/README.md", name)) and OWN_SCENARIO.search(text):
        named.add(role[1])  # a role README that speaks of its own scenario
    wrong = {
        "scenarios": sorted(named - scenarios()),
        "inventory groups": sorted(named_groups(text) - groups()),
        "accounts": sorted(named_accounts(text) - accounts()),
    }
    assert not any(wrong.values()), f"{name} names what does not exist: {wrong}"


@pytest.mark.parametrize("name", markdown_files())
def test_every_role_variable_named_is_defined(name):
    missing = undefined_role_variables(named_role_variables((ROOT / name).read_text()))
    assert not missing, f"{name} names role variables nothing defines: {missing}"


def test_comments_name_only_scenarios_that_exist():
    """Scenario files point at each other in comments; a removed scenario must not stay
    named there."""
    wrong = {}
    for name in tracked("*molecule/*/*.yml") + tracked(".config/molecule/*.yml"):
        comments = "\n".join(re.findall(r"#(.*)", (ROOT / name).read_text()))
        if missing := sorted(named_scenarios(comments) - scenarios()):
            wrong[name] = missing
    assert not wrong, f"comments name scenarios that do not exist: {wrong}"


def test_the_checks_see_what_they_check():
    """The collectors find the repo's real names, so an empty set cannot pass everything."""
    assert {"cluster", "default", "nginx_edge"} <= scenarios()
    assert {"prefect_server", "prefect_services", "prefect_redis", "nginx_edge"} <= groups()
    assert {"prefect-server", "prefect-worker", "deploy", "root"} <= accounts()
    assert {"prefect_deploy_current", "prefect_worker_query_seconds"} <= variables()
    readme = (ROOT / "README.md").read_text()
    assert "inventories/<env>/host_vars/<server host>/prefect_deployment.yml" in readme
    assert len(path_candidates(readme)) > 20
