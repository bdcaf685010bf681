"""The settings reference, generated from the settings models
(``python -m mongars_core.settings_docs``).

Each section, the core's and every installed plugin's, becomes a Markdown
table of its environment variables, types, defaults and descriptions (the
models' field descriptions, with their bounds). A document keeps each table
between two markers, written by ``--write`` and compared by ``--check``::

    <!-- generated settings: ollama -->
    ...
    <!-- end of generated settings -->

docs/configuration.md is kept this way (tests/test_docs.py runs the check), and
so can a third-party plugin's README: ``--plugin NAME`` renders, writes or
checks that plugin's sections alone. Plugins come from the installed entry
points; one that fails to load is logged, named on standard error and left out.

A default made by a ``default_factory`` is never computed into the document
(it may depend on the machine, the environment or chance): the table shows the
field's ``json_schema_extra={"documented_default": "..."}``, else "computed".
A default URL is shown without its password.
"""

from __future__ import annotations

import argparse
import re
import sys
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import pluggy
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

from mongars_core.errors import ConfigurationError
from mongars_core.plugins import ENTRY_POINT_GROUP, PluginHost, build_plugin_manager
from mongars_core.settings import (
    ENV_PREFIX,
    NESTED_DELIMITER,
    LLMSettings,
    MemorySettings,
    Settings,
)

GENERAL = "general"
"""The block name of the core's top-level settings (``MONGARS_DATA_DIR``, ...)."""

_START = "<!-- generated settings: "
_END = "<!-- end of generated settings -->"
_BLOCK = re.compile(
    rf"^{re.escape(_START)}(?P<name>[a-z0-9_]+) -->\n(?P<body>.*?)^{re.escape(_END)}$",
    re.M | re.S,
)
_URL_PASSWORD = re.compile(r"(?P<start>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):\S*@")
_EMPTY_FACTORIES: tuple[object, ...] = (list, dict, set, tuple)
_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "≤"),
)


@dataclass(frozen=True)
class DocumentedSection:
    """A settings section as the reference shows it: its variables' prefix and its origin."""

    name: str
    model: type[BaseModel]
    prefix: str
    plugin: str | None
    """The plugin that declares it; ``None`` for the core's own."""

    def render(self) -> str:
        """The block between the markers: where the section comes from, then its table."""
        where = f"`{self.model.__name__}` in `{self.model.__module__}`"
        origin = f"From the `{self.plugin}` plugin" if self.plugin else "Core"
        rows = "".join(_rows(self.model, self.prefix, skip_sections=self.name == GENERAL))
        return (
            f"{origin}: {where}.\n\n"
            "| Environment variable | Type | Default | Description |\n"
            f"|---|---|---|---|\n{rows}"
        )


def core_sections() -> list[DocumentedSection]:
    """The core's sections: the top-level settings, ``llm`` and ``memory``."""
    return [
        DocumentedSection(GENERAL, Settings, ENV_PREFIX, None),
        DocumentedSection("llm", LLMSettings, f"{ENV_PREFIX}LLM{NESTED_DELIMITER}", None),
        DocumentedSection("memory", MemorySettings, f"{ENV_PREFIX}MEMORY{NESTED_DELIMITER}", None),
    ]


def plugin_sections(
    pm: pluggy.PluginManager, *, plugins: Iterable[str] | None = None
) -> list[DocumentedSection]:
    """The sections the plugins of ``pm`` declare (those of ``plugins`` only, when given)."""
    host = PluginHost(pm, Settings.model_construct())
    sections = host.settings_sections()
    declared_by = host.settings_section_owners()
    wanted = None if plugins is None else set(plugins)
    return [
        DocumentedSection(name, section.model, section.env_prefix, declared_by[name])
        for name, section in sorted(sections.items())
        if wanted is None or declared_by[name] in wanted
    ]


def installed_plugins() -> tuple[pluggy.PluginManager, dict[str, str | None]]:
    """Every installed plugin, loaded from the entry points with no setting applied, and
    those that failed to load (logged and skipped), each with its distribution."""
    pm = build_plugin_manager(Settings.model_construct())
    loaded = {name for name, plugin in pm.list_name_plugin() if plugin is not None}
    failed = {
        entry_point.name: entry_point.dist.name if entry_point.dist else None
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP)
        if entry_point.name not in loaded
    }
    return pm, dict(sorted(failed.items()))


def installed_sections(
    pm: pluggy.PluginManager | None = None, *, distribution: str | None = None
) -> list[DocumentedSection]:
    """The core's sections and those of every plugin of ``pm`` (default: the installed
    ones; those of ``distribution`` only, when given)."""
    if pm is None:
        pm = installed_plugins()[0]
    plugins = None
    if distribution is not None:
        infos = PluginHost(pm, Settings.model_construct()).plugin_infos()
        plugins = [info.name for info in infos if info.distribution == distribution]
    return core_sections() + plugin_sections(pm, plugins=plugins)


def update_document(text: str, sections: Sequence[DocumentedSection]) -> str:
    """``text`` with each generated block rewritten; sections it lacks are appended."""
    rendered = {section.name: section.render() for section in sections}
    written: set[str] = set()

    def rewrite(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in rendered:
            return match[0]
        written.add(name)
        return _block(name, rendered[name])

    text = _BLOCK.sub(rewrite, text)
    for section in sections:
        if section.name not in written:
            block = _block(section.name, rendered[section.name])
            text = f"{text.rstrip()}\n\n## `{section.name}`\n\n{block}\n"
    return text


def document_problems(
    text: str, sections: Sequence[DocumentedSection], *, every_section: bool = True
) -> list[str]:
    """How ``text`` differs from the generated reference: one line per stale,
    missing or unknown block (empty when it is up to date). Unless
    ``every_section``, ``sections`` are some plugins' only and other blocks are
    not looked at."""
    found = {match["name"]: match["body"] for match in _BLOCK.finditer(text)}
    problems = []
    for section in sections:
        if section.name not in found:
            problems.append(f"no generated table for the section {section.name!r}")
        elif found.pop(section.name) != section.render():
            problems.append(f"the table of the section {section.name!r} is out of date")
    if every_section:
        problems += [f"a table for {name!r}, which no installed plugin declares" for name in found]
    return problems


def _block(name: str, body: str) -> str:
    return f"{_START}{name} -->\n{body}{_END}"


def _rows(model: type[BaseModel], prefix: str, *, skip_sections: bool = False) -> Iterable[str]:
    for field, info in model.model_fields.items():
        variable = f"{prefix}{field.upper()}"
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not skip_sections:  # the top level's sections get tables of their own
                yield from _rows(annotation, f"{variable}{NESTED_DELIMITER}")
            continue
        cells = (f"`{variable}`", _type_text(info), _default_text(info), _description(info))
        if any(marker in cell for cell in cells for marker in (_START, _END)):
            raise ConfigurationError(
                f"{variable}: its description or documented default holds a generated-table "
                "marker, which would end the table"
            )
        yield "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |\n"


def _type_text(info: FieldInfo) -> str:
    annotation = info.annotation
    options = [arg for arg in _union_members(annotation) if arg is not type(None)]
    if len(options) == 1 and get_origin(options[0]) is Literal:
        values = [f"`{value}`" for value in get_args(options[0])]
        return ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]
    text = f"`{_type_name(annotation)}`"
    if SecretStr in options:
        return f"secret {text}"
    structured = any(get_origin(arg) in (list, dict, set, tuple) for arg in options)
    if structured and not any(item is NoDecode for item in info.metadata):
        return f"JSON {text}"
    return text


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "None"
    if annotation is SecretStr:
        return "str"
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in get_args(annotation))
    if origin is not None:
        arguments = ", ".join(_type_name(arg) for arg in get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{arguments}]"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("documented_default"), str):
        return " ".join(str(extra["documented_default"]).split())
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return "empty" if info.default_factory in _EMPTY_FACTORIES else "computed"
    value = info.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | tuple | set | dict | str) and not value:
        return "empty"
    if isinstance(value, list | tuple):
        return f"`{','.join(_without_password(str(item)) for item in value)}`"
    return f"`{_without_password(str(value))}`"


def _without_password(text: str) -> str:
    """``text`` with the password of a ``scheme://user:password@`` URL (up to the last
    ``@``) as ``***``."""
    return _URL_PASSWORD.sub(r"\g<start>:***@", text)


def _description(info: FieldInfo) -> str:
    text = " ".join((info.description or "").split())
    bounds = [
        f"{symbol} {getattr(item, attribute)}"
        for item in info.metadata
        for kind, attribute, symbol in _BOUNDS
        if isinstance(item, kind)
    ]
    if bounds:
        text = f"{text} Must be {' and '.join(bounds)}.".strip()
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mongars_core.settings_docs``: print, ``--write`` or ``--check`` the reference."""
    parser = argparse.ArgumentParser(
        prog="python -m mongars_core.settings_docs",
        description="Print, write or check the settings reference tables.",
    )
    parser.add_argument("--plugin", action="append", help="only this plugin's sections")
    parser.add_argument("--distribution", help="only the plugins of this distribution")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", type=Path, metavar="FILE", help="rewrite the tables of FILE")
    mode.add_argument("--check", type=Path, metavar="FILE", help="fail when FILE is out of date")
    arguments = parser.parse_args(argv)
    pm, failed = installed_plugins()
    for name, distribution in failed.items():
        print(
            f"note: the plugin {name!r} from {distribution or 'an unknown distribution'} failed "
            "to load (logged); its settings are left out",
            file=sys.stderr,
        )
    sections = installed_sections(pm, distribution=arguments.distribution)
    if arguments.plugin:
        declaring = sorted({section.plugin for section in sections if section.plugin})
        unknown = [name for name in arguments.plugin if name not in declaring]
        if unknown:
            print(
                f"error: no installed plugin {', '.join(map(repr, unknown))} declares settings; "
                f"those that do: {', '.join(declaring)}",
                file=sys.stderr,
            )
            return 1
        sections = [section for section in sections if section.plugin in arguments.plugin]
    try:
        if arguments.write:
            arguments.write.write_text(update_document(arguments.write.read_text(), sections))
        elif arguments.check:
            text = arguments.check.read_text()
            problems = document_problems(text, sections, every_section=not arguments.plugin)
            for problem in problems:
                print(f"{arguments.check}: {problem}", file=sys.stderr)
            return 1 if problems else 0
        else:
            print("\n\n".join(f"## `{s.name}`\n\n{_block(s.name, s.render())}" for s in sections))
    except OSError as exc:
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
