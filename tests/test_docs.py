"""The reference docs stay true to the code: every hook and every setting is documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pydantic import BaseModel

from mongars_core import hookspecs
from mongars_core.settings import Settings

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


def env_names(model: type[BaseModel], prefix: str = "MONGARS_") -> list[str]:
    names = []
    for field, info in model.model_fields.items():
        name = f"{prefix}{field.upper()}"
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.extend(env_names(annotation, f"{name}__"))
        else:
            names.append(name)
    return names


def test_every_setting_is_documented() -> None:
    names = env_names(Settings)
    assert "MONGARS_LLM__BACKEND" in names and "MONGARS_DATA_DIR" in names
    missing = [name for name in names if f"`{name}`" not in CONFIG_DOC]
    assert missing == []
