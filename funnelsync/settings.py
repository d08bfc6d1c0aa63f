"""What every settings model shares: the strict base model and the checks of names and URLs.

`config.py` composes the settings; each connector's own settings sit beside it
(`connectors/sql_settings.py`, `connectors/moesif/settings.py`, `connectors/hubspot_settings.py`).
This module imports neither, so all of them can import it.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

# HubSpot internal names: lower-case letters, digits and underscores, starting with a letter.
_INTERNAL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    # strict: a number, a boolean or an array is never read from a string ("90", "true"), so a
    # value quoted by mistake is named rather than taken
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _internal_name(value: str) -> str:
    if not _INTERNAL_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a HubSpot internal name: use lower-case letters, digits and "
            "underscores, starting with a letter"
        )
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_base_url(value: str, example: str) -> str:
    """The base URL of an API that is sent a token: only the token authenticates, and only over
    TLS, unless the API is on this machine (the sandbox)."""
    text = value.strip()
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname or re.search(r"\s", text):
        raise ValueError(f"{value!r} is not an http(s) URL such as {example}")
    if "?" in text or "#" in text:
        raise ValueError(f"{value!r} is not a base http(s) URL: leave out the query string or fragment "
                         f"(e.g. {example})")
    if "@" in url.netloc:
        raise ValueError(f"{value!r} carries a user name or password: leave it out, the token is read "
                         "from the environment variable that token_env names")
    try:
        url.port  # noqa: B018  (raises for a port that is not a number in range)
    except ValueError:
        raise ValueError(f"{value!r} is not an http(s) URL: its port is not a number") from None
    if url.scheme == "http" and not _loopback(url.hostname):
        raise ValueError(f"{value!r} is plain http:// to another machine: the token would travel in clear "
                         f"text; use https:// (plain http:// only to a loopback address such as 127.0.0.1)")
    return text.rstrip("/")
