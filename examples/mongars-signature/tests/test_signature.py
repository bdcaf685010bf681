"""mongars-signature's tests, written with the fixtures of monGARS's test kit.

``pip install -e . 'mongars-assistant[testkit]'``, then ``pytest``: the kit's
pytest plugin is loaded by itself. ``make_assistant`` builds an assistant with
exactly the plugins given, over the ``instant_backend`` stand-in model, in
the test's own folder, and closes it when the test ends.
"""

from __future__ import annotations

import mongars_signature

from mongars_testkit import InstantBackend, ScriptedBackend
from mongars_testkit.assistants import AssistantFactory

PLUGIN = ("signature", mongars_signature)


async def test_the_reply_is_signed(make_assistant: AssistantFactory) -> None:
    assistant = await make_assistant(PLUGIN)
    reply = await assistant.chat("ada", "Hello")
    assert reply.text == "You said: Hello\n\n— monGARS"
    assert reply.warnings == []


async def test_the_signature_comes_from_the_plugins_settings_section(
    make_assistant: AssistantFactory,
) -> None:
    assistant = await make_assistant(PLUGIN, signature={"text": "-- Ada's assistant"})
    reply = await assistant.chat("ada", "Hello")
    assert reply.text == "You said: Hello\n\n-- Ada's assistant"


async def test_a_signed_reply_is_not_signed_again(make_assistant: AssistantFactory) -> None:
    model = ScriptedBackend("Noted.\n\n— monGARS")
    assistant = await make_assistant(PLUGIN, backend=model)
    reply = await assistant.chat("ada", "Sign this")
    assert reply.text == "Noted.\n\n— monGARS"


async def test_the_installed_entry_point_loads(
    make_assistant: AssistantFactory, instant_backend: InstantBackend
) -> None:
    assistant = await make_assistant("signature")  # by entry-point name: as pip installed it
    (info,) = [info for info in assistant.plugins.plugin_infos() if info.name == "signature"]
    assert info.distribution == "mongars-signature"
    assert info.hooks == ["mongars_adapt_reply", "mongars_register_settings"]
    assert (await assistant.chat("ada", "Hi")).text.endswith("— monGARS")
    assert len(instant_backend.requests) == 1
