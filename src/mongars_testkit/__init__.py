"""The monGARS test kit: what a plugin's tests need, shipped with monGARS.

* :mod:`mongars_testkit.plugin`, a pytest plugin loaded through the
  ``pytest11`` entry point ``mongars``, provides the fixtures
  ``mongars_settings``, ``instant_backend``, ``make_assistant``,
  ``ollama_standin`` and ``ollama_url``.
* :class:`InstantBackend` and :class:`ScriptedBackend` stand in for a model;
  :class:`BackendPlugin` registers any backend under a name.
* :mod:`mongars_testkit.ollama_standin` is a server that follows Ollama's
  REST API (``python -m mongars_testkit.ollama_standin``).

docs/writing_a_plugin.md ("4. Test the plugin") shows them in use.
"""

from mongars_testkit.backends import BackendPlugin, InstantBackend, ScriptedBackend

__all__ = ["BackendPlugin", "InstantBackend", "ScriptedBackend"]
