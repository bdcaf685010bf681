"""The Ollama servers of ``MONGARS_OLLAMA__HOSTS``: each entry is "URL" or "NAME=URL".

One unnamed host becomes the backend ``ollama``. Otherwise every host becomes
``ollama:NAME``; an unnamed one is called ``hostN`` after its position in the
list (``host1``, ``host2``...). A URL without a scheme is taken as ``http://``,
and without a port as Ollama's 11434, as the ``ollama`` command does.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from mongars_core.errors import ConfigurationError

DEFAULT_PORT = 11434
BACKEND_PREFIX = "ollama"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class OllamaHost:
    """One configured Ollama server."""

    backend_name: str
    """``ollama`` or ``ollama:NAME``: the name of its LLM backend (and embedder)."""
    url: str
    """Normalised base URL, e.g. ``http://127.0.0.1:11434``."""
    name: str | None = None
    """``NAME``, ``hostN``, or ``None`` for the single unnamed host."""

    def matches(self, wanted: str) -> bool:
        """Whether ``wanted`` names this host: its backend name, its name or its URL."""
        if wanted in (self.backend_name, self.name, self.url):
            return True
        try:
            return normalise_url(wanted) == self.url
        except ConfigurationError:
            return False


def normalise_url(url: str) -> str:
    """``url`` with a scheme and a port, without a trailing slash.

    Raises :class:`~mongars_core.errors.ConfigurationError` when it is not an
    http(s) URL with a host.
    """
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
        explicit_scheme = False
    else:
        explicit_scheme = True
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"MONGARS_OLLAMA__HOSTS: {url!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"MONGARS_OLLAMA__HOSTS: {url!r} is not an http(s) URL with a host name"
        )
    netloc = parts.netloc
    if port is None and not explicit_scheme:
        netloc = f"{netloc}:{DEFAULT_PORT}"
    path = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))


def parse_hosts(entries: Sequence[str]) -> list[OllamaHost]:
    """The hosts of ``settings.ollama.hosts``, with their backend names."""
    parsed: list[tuple[str | None, str]] = []
    for entry in entries:
        name, separator, rest = entry.partition("=")
        if separator and "://" not in name and "/" not in name:
            if not _NAME.match(name.strip()):
                raise ConfigurationError(
                    f"MONGARS_OLLAMA__HOSTS: {name.strip()!r} is not a valid host name "
                    "(letters, digits, '.', '_' and '-')"
                )
            parsed.append((name.strip(), normalise_url(rest)))
        else:
            parsed.append((None, normalise_url(entry)))
    if len(parsed) == 1 and parsed[0][0] is None:
        return [OllamaHost(backend_name=BACKEND_PREFIX, url=parsed[0][1])]
    hosts: list[OllamaHost] = []
    seen: set[str] = set()
    for position, (given, url) in enumerate(parsed, start=1):
        label = given or f"host{position}"
        if label in seen:
            raise ConfigurationError(f"MONGARS_OLLAMA__HOSTS names the host {label!r} twice")
        seen.add(label)
        hosts.append(OllamaHost(backend_name=f"{BACKEND_PREFIX}:{label}", url=url, name=label))
    return hosts
