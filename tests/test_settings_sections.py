"""Plugins' settings sections: read from MONGARS_<SECTION>__<FIELD> as the core's are."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, create_model, field_validator
from pydantic_settings import NoDecode

from mongars_core.errors import ConfigurationError
from mongars_core.settings import Section, Settings, bind_sections, split_comma_list
from mongars_plugins.cuda.settings import LOCAL, models_dir
from mongars_plugins.ollama.settings import OLLAMA
from mongars_plugins.ray_serve.settings import RAY
from mongars_plugins.speech.settings import SPEECH
from mongars_server.settings import SERVER


class GlossarySettings(BaseModel):
    path: Path = Path("glossary.json")
    max_entries: int = Field(3, ge=1)
    languages: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["en"])
    aliases: dict[str, str] = Field(default_factory=dict)

    _split = field_validator("languages", mode="before")(split_comma_list)


class TokenSettings(BaseModel):
    token: str
    retries: int = 1


GLOSSARY = Section("glossary", GlossarySettings)
TOKEN = Section("token_service", TokenSettings)


def test_a_section_reads_its_variables_like_the_core_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONGARS_GLOSSARY__PATH", "/srv/terms.json")
    monkeypatch.setenv("MONGARS_GLOSSARY__LANGUAGES", "fr, en,,de")
    monkeypatch.setenv("MONGARS_GLOSSARY__ALIASES", '{"LLM": "language model"}')
    glossary = Settings().section(GLOSSARY)
    assert glossary.path == Path("/srv/terms.json")
    assert glossary.languages == ["fr", "en", "de"]
    assert glossary.aliases == {"LLM": "language model"}
    assert glossary.max_entries == 3


def test_a_whole_section_can_be_one_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGARS_GLOSSARY", '{"max_entries": 7, "path": "a.json"}')
    monkeypatch.setenv("MONGARS_GLOSSARY__PATH", "b.json")
    glossary = Settings().section(GLOSSARY)
    assert (glossary.max_entries, glossary.path) == (7, Path("b.json"))


def test_values_given_to_settings_win_field_by_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGARS_GLOSSARY__PATH", "/from/env.json")
    monkeypatch.setenv("MONGARS_GLOSSARY__MAX_ENTRIES", "9")
    settings = Settings(glossary={"max_entries": 2})
    glossary = settings.section(GLOSSARY)
    assert (glossary.path, glossary.max_entries) == (Path("/from/env.json"), 2)
    whole = Settings(glossary=GlossarySettings(max_entries=5)).section(GLOSSARY)
    assert (whole.path, whole.max_entries) == (Path("glossary.json"), 5)


def test_a_copy_with_a_section_replaced_reads_the_new_values() -> None:
    settings = Settings(glossary={"max_entries": 2})
    assert settings.section(GLOSSARY).max_entries == 2
    copy = settings.model_copy(update={"glossary": {"max_entries": 4}})
    assert copy.section(GLOSSARY).max_entries == 4
    assert settings.section(GLOSSARY).max_entries == 2


def test_a_section_is_read_once_per_settings_object(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    first = settings.section(GLOSSARY)
    monkeypatch.setenv("MONGARS_GLOSSARY__MAX_ENTRIES", "8")
    assert settings.section(GLOSSARY) is first
    assert Settings().section(GLOSSARY).max_entries == 8


def test_an_invalid_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONGARS_GLOSSARY__MAX_ENTRIES", "0")
    settings = Settings()  # the core does not know the section: building it succeeds
    with pytest.raises(ConfigurationError) as raised:
        settings.section(GLOSSARY)
    assert str(raised.value) == (
        "invalid settings: MONGARS_GLOSSARY__MAX_ENTRIES: "
        "Input should be greater than or equal to 1"
    )


def test_a_missing_required_field_names_its_variable() -> None:
    with pytest.raises(ConfigurationError, match="MONGARS_TOKEN_SERVICE__TOKEN: Field required"):
        Settings().section(TOKEN)


def test_binding_reports_every_bad_variable_of_every_section_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONGARS_GLOSSARY__MAX_ENTRIES", "none")
    monkeypatch.setenv("MONGARS_OLLAMA__TIMEOUT_S", "-1")
    with pytest.raises(ConfigurationError) as raised:
        bind_sections(Settings(), {"glossary": GLOSSARY, "ollama": OLLAMA, "token": TOKEN})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("invalid settings: MONGARS_GLOSSARY__MAX_ENTRIES: ")
    assert "; MONGARS_OLLAMA__TIMEOUT_S: Input should be greater than 0; " in message
    assert message.endswith("; MONGARS_TOKEN_SERVICE__TOKEN: Field required")


def test_binding_keeps_the_values_it_read(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    bind_sections(settings, {"glossary": GLOSSARY})
    monkeypatch.setenv("MONGARS_GLOSSARY__MAX_ENTRIES", "8")
    assert settings.section(GLOSSARY).max_entries == 3


def test_variables_of_unknown_sections_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGARS_NOBODY__ANSWER", "42")
    monkeypatch.setenv("MONGARS_NOBODY", '{"answer": 42}')
    monkeypatch.setenv("MONGARS_HISTORY_TURN", "3")  # misspelt
    settings = Settings()
    assert settings.__pydantic_extra__ == {}
    assert "nobody" not in settings.model_dump()
    assert settings.history_turns == 6


@pytest.mark.parametrize("name", ["Glossary", "two__parts", "_private", "trailing_", "a-b", ""])
def test_a_section_name_is_lower_case_words_and_single_underscores(name: str) -> None:
    with pytest.raises(ValueError, match="section name"):
        Section(name, GlossarySettings)


@pytest.mark.parametrize(
    ("variable", "value", "section", "field", "expected"),
    [
        ("MONGARS_OLLAMA__HOSTS", "a=http://h:1,http://h:2", OLLAMA, "hosts", None),
        ("MONGARS_SERVER__PORT", "9001", SERVER, "port", 9001),
        ("MONGARS_LOCAL__DEVICE", "cpu", LOCAL, "device", "cpu"),
        ("MONGARS_RAY__REPLICAS", "3", RAY, "replicas", 3),
        ("MONGARS_SPEECH__WORDS_PER_SECOND", "3.5", SPEECH, "words_per_second", 3.5),
    ],
)
def test_the_bundled_plugins_keep_their_variable_names(
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    section: Section[Any],
    field: str,
    expected: object,
) -> None:
    monkeypatch.setenv(variable, value)
    read = getattr(Settings().section(section), field)
    assert read == (["a=http://h:1", "http://h:2"] if expected is None else expected)


def test_the_model_folder_follows_the_cuda_section(tmp_path: Path) -> None:
    assert models_dir(Settings(cache_dir=tmp_path)) == tmp_path / "models"
    chosen = Settings(cache_dir=tmp_path, local={"model_dir": str(tmp_path / "mine")})
    assert models_dir(chosen) == tmp_path / "mine"


def test_settings_with_sections_read_survive_pickling() -> None:
    settings = Settings(glossary={"max_entries": 2})
    settings.section(GLOSSARY)
    copy = pickle.loads(pickle.dumps(settings))
    assert copy.section(GLOSSARY).max_entries == 2


@pytest.mark.parametrize("name", ["model_dump", "model_config", "model_x", "json", "copy", "dict"])
def test_a_section_name_may_not_shadow_a_pydantic_attribute(name: str) -> None:
    with pytest.raises(ConfigurationError, match=f"section name {name!r}"):
        Section(name, GlossarySettings)


@pytest.mark.parametrize("model", [dict, int, "GlossarySettings", GlossarySettings()])
def test_a_section_model_must_be_a_pydantic_model_class(model: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"section 'np'.*not a pydantic BaseModel"):
        Section("np", model)


def test_a_section_that_is_not_json_is_named_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONGARS_GLOSSARY__PATH", "fine.json")
    monkeypatch.setenv("MONGARS_GLOSSARY__ALIASES", '{"secret9": ')
    with pytest.raises(ConfigurationError) as raised:
        Settings().section(GLOSSARY)
    message = str(raised.value)
    assert message.startswith("invalid settings: MONGARS_GLOSSARY__ALIASES: not valid JSON (")
    assert "secret9" not in message and "PATH" not in message


def test_readers_of_sections_are_not_kept_forever() -> None:
    import gc
    import weakref

    models = [create_model(f"Throwaway{n}", size=(int, 1)) for n in range(300)]
    first = weakref.ref(models[0])
    for model in models:
        assert Settings().section(Section("throwaway", model)).model_dump() == {"size": 1}
    del models, model
    gc.collect()
    assert first() is None


def test_a_misspelt_variable_of_a_registered_section_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MONGARS_GLOSSARY__MAX_ENTRY", "secret9")
    monkeypatch.setenv("MONGARS_GLOSSARY__MAX_ENTRIES", "4")
    monkeypatch.setenv("MONGARS_GLOSSARY", "{}")
    monkeypatch.setenv("MONGARS_UNINSTALLED__ANYTHING", "1")
    with caplog.at_level(logging.WARNING, logger="mongars_core.settings"):
        bind_sections(Settings(), {"glossary": GLOSSARY})
    assert [record.getMessage() for record in caplog.records] == [
        "MONGARS_GLOSSARY__MAX_ENTRY is not a setting of the section 'glossary' and is ignored "
        "(its settings: path, max_entries, languages, aliases)"
    ]
