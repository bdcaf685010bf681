"""The reference docs stay true to the code: every hook and every setting is documented."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from mongars_core import DISTRIBUTION, hookspecs
from mongars_core.settings_docs import document_problems, installed_sections, update_document

ROOT = Path(__file__).resolve().parents[1]
HOOKS_DOC = (ROOT / "docs" / "plugin_hooks.md").read_text()
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text()


def hook_signatures() -> dict[str, str]:
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    return {
        node.name: f"def {node.name}({ast.unparse(node.args)}) -> {ast.unparse(node.returns)}:"
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and node.name.startswith("mongars_")
        and node.returns is not None
    }


def test_every_hook_has_a_section_with_its_exact_signature() -> None:
    signatures = hook_signatures()
    assert len(signatures) >= 15
    sections = dict(re.findall(r"^## (mongars_\w+)\n(.*?)(?=^## |\Z)", HOOKS_DOC, re.M | re.S))
    for name, signature in signatures.items():
        assert name in sections, f"docs/plugin_hooks.md has no section for {name}"
        assert signature in sections[name], f"the documented signature of {name} differs"


def test_the_hooks_doc_names_no_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"^## (mongars_\w+)", HOOKS_DOC, re.M))
    assert documented == set(hook_signatures())


def test_the_configuration_reference_is_generated_from_every_bundled_section() -> None:
    sections = installed_sections(distribution=DISTRIBUTION)
    assert {"general", "llm", "memory", "ollama", "ray", "local", "speech", "server"} <= {
        section.name for section in sections
    }
    assert document_problems(CONFIG_DOC, sections) == []


def test_the_reference_says_which_plugin_declares_each_section() -> None:
    sections = {section.name: section for section in installed_sections(distribution=DISTRIBUTION)}
    assert sections["llm"].plugin is None and sections["memory"].plugin is None
    assert sections["local"].plugin == "cuda" and sections["server"].plugin == "server"
    assert "From the `ray_serve` plugin: `RayServeSettings`" in CONFIG_DOC


def test_the_check_finds_a_stale_a_missing_and_an_unknown_table() -> None:
    sections = installed_sections(distribution=DISTRIBUTION)
    stale = CONFIG_DOC.replace("| `MONGARS_OLLAMA__HOSTS` |", "| `MONGARS_OLLAMA__HOST` |")
    assert document_problems(stale, sections) == [
        "the table of the section 'ollama' is out of date"
    ]
    without_speech = [section for section in sections if section.name != "speech"]
    assert document_problems(CONFIG_DOC, without_speech) == [
        "a table for 'speech', which no installed plugin declares"
    ]
    assert document_problems(update_document("# Nothing yet\n", sections), sections) == []


def test_not_built_yet_names_no_bundled_plugin() -> None:
    """docs/architecture.md's "Not built yet" lists no plugin that ships registered."""
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    not_built = architecture.split("\n## Not built yet\n", 1)[1].split("\n## ", 1)[0]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    bundled = pyproject["project"]["entry-points"]["mongars"].values()
    assert "mongars_plugins.memory" in bundled
    assert [module for module in bundled if f"`{module}`" in not_built] == []
