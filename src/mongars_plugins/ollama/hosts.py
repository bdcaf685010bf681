"""The Ollama servers of ``MONGARS_OLLAMA__HOSTS``: each entry is "URL" or "NAME=URL".

One unnamed host becomes the backend ``ollama``. Otherwise every host becomes
``ollama:NAME``; an unnamed one is called ``hostN`` after its position in the
list (``host1``, ``host2``...). A URL without a scheme is taken as ``http://``,
and without a port as Ollama's 11434, as the ``ollama`` command does.

A URL may carry a user and password (``http://user:secret@host``, for a proxy
that asks for HTTP basic authentication): they are kept apart from
:attr:`OllamaHost.url` and sent as basic auth, and every message, log line and
listing shows the URL masked (``http://user:***@host:11434``).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

from mongars_core.errors import ConfigurationError

DEFAULT_PORT = 11434
BACKEND_PREFIX = "ollama"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# "Port could not be cast to integer value as 'top'": the quoted text may be part of a password.
_QUOTED = re.compile(r"\s*(as\s+)?'[^']*'")


def masked_url(url: str) -> str:
    """``url`` as an error shows it: everything between ``://`` (or the start) and the
    last ``@`` is masked, keeping a user name, so a password with ``/``, ``?``, ``#`` or
    ``@`` in it is hidden too: ``http://user:***@host``."""
    scheme, separator, rest = url.strip().partition("://")
    if not separator:
        scheme, rest = "", scheme
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url.strip()
    user, colon, _ = credentials.partition(":")
    shown = f"{user}:***" if colon else "***"
    return f"{scheme}{separator}{shown}@{location}"


@dataclass(frozen=True)
class OllamaHost:
    """One configured Ollama server."""

    backend_name: str
    """``ollama`` or ``ollama:NAME``: the name of its LLM backend (and embedder)."""
    url: str
    """Normalised base URL, e.g. ``http://127.0.0.1:11434``."""
    name: str | None = None
    """``NAME``, ``hostN``, or ``None`` for the single unnamed host."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    """Basic-auth credentials from the URL; never shown (see :attr:`display_url`)."""

    @property
    def auth(self) -> tuple[str, str] | None:
        """``(user, password)`` for httpx's basic auth, or ``None``."""
        if self.username is None and self.password is None:
            return None
        return (self.username or "", self.password or "")

    @property
    def display_url(self) -> str:
        """The URL as messages and logs show it: ``http://user:***@host:port``."""
        if self.auth is None:
            return self.url
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{self.username or ''}:***@{rest}"

    def matches(self, wanted: str) -> bool:
        """Whether ``wanted`` names this host: its backend name, its name or its URL."""
        if wanted in (self.backend_name, self.name, self.url):
            return True
        try:
            return normalise_url(wanted) == self.url
        except ConfigurationError:
            return False


def normalise_url(url: str) -> str:
    """``url`` with a scheme and a port, without a trailing slash or credentials.

    Raises :class:`~mongars_core.errors.ConfigurationError` when it is not an
    http(s) URL with a host.
    """
    return split_url(url)[0]


def split_url(url: str) -> tuple[str, str | None, str | None]:
    """:func:`normalise_url` of ``url``, and the user and password it names (decoded)."""
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
        reason = _QUOTED.sub("", str(exc))
        raise ConfigurationError(
            f"MONGARS_OLLAMA__HOSTS: {masked_url(url)!r} is not a URL ({reason})"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"MONGARS_OLLAMA__HOSTS: {masked_url(url)!r} is not an http(s) URL with a host name"
        )
    netloc = parts.netloc.rpartition("@")[2]
    if port is None and not explicit_scheme:
        netloc = f"{netloc}:{DEFAULT_PORT}"
    path = parts.path.rstrip("/")
    username = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, "", "")), username, password


def parse_hosts(entries: Sequence[str]) -> list[OllamaHost]:
    """The hosts of ``MONGARS_OLLAMA__HOSTS``, with their backend names."""
    parsed: list[tuple[str | None, tuple[str, str | None, str | None]]] = []
    for entry in entries:
        name, separator, rest = entry.partition("=")
        if separator and "://" not in name and "/" not in name:
            if not _NAME.match(name.strip()):
                raise ConfigurationError(
                    f"MONGARS_OLLAMA__HOSTS: {name.strip()!r} is not a valid host name "
                    "(letters, digits, '.', '_' and '-')"
                )
            parsed.append((name.strip(), split_url(rest)))
        else:
            parsed.append((None, split_url(entry)))
    if len(parsed) == 1 and parsed[0][0] is None:
        url, username, password = parsed[0][1]
        return [OllamaHost(BACKEND_PREFIX, url, None, username, password)]
    hosts: list[OllamaHost] = []
    seen: set[str] = set()
    for position, (given, (url, username, password)) in enumerate(parsed, start=1):
        label = given or f"host{position}"
        if label in seen:
            raise ConfigurationError(f"MONGARS_OLLAMA__HOSTS names the host {label!r} twice")
        seen.add(label)
        hosts.append(OllamaHost(f"{BACKEND_PREFIX}:{label}", url, label, username, password))
    return hosts
