"""What an http(s) URL's origin is: the one normalisation every "may this URL be contacted?" check uses.

Owns: ``Origin`` (scheme, host, port) and ``origin_of(url)``: the scheme lower-cased, the host as the HTTP client
will contact it (lower-cased, IDNA-encoded, IPv6 literals compressed, a trailing dot stripped — ``files.slack.com.``
is ``files.slack.com``), the default port filled in (80 for http, 443 for https), userinfo ignored. A URL that is
not http(s), has no host, or that the client's URL parser (yarl, the one aiohttp uses) cannot read has no origin:
callers refuse it. Parsing with yarl rather than ``urllib`` means the origin checked is the one aiohttp connects to.
Must not import: aiohttp (the pure media policy depends on this module), ``bridge``, ``handlers``, Slack packages.
Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from yarl import URL

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    """An http(s) origin, normalised so that equal origins compare equal (``https://files.slack.com:443`` and
    ``https://FILES.slack.com.`` both give ``Origin("https", "files.slack.com", 443)``)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def https(cls, host: str) -> Origin:
        """An https host on the default port (an allow-list entry): the host normalised as in ``origin_of``."""
        origin = origin_of(f"https://{host}")
        if origin is None:
            raise ValueError(f"{host!r} is not a host name")
        return origin


def origin_of(url: str) -> Origin | None:
    """The normalised origin of an http(s) URL; None if it is not one (or cannot be read)."""
    try:
        parsed = URL(url)
        scheme = parsed.scheme.lower()
        host = parsed.raw_host
        port = parsed.explicit_port
    except (ValueError, TypeError):
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    host = host.lower().rstrip(".")
    if not host:
        return None
    return Origin(scheme, host, DEFAULT_PORTS[scheme] if port is None else port)
