"""URLs as they may be shown or stored: credentials masked.

A base URL can carry a secret: a proxy's user and password (``https://user:pass@host``) or a
key in the query string (``?api-key=...`` as Azure OpenAI gateways take it, ``?key=...`` as
Gemini does). Every header line, report field, preflight message and log tail that shows a URL
passes it through :func:`mask_url` (or :func:`mask_urls_in` for free text); the real URL goes to
the SDK clients only.

Stdlib only, and no parsing that can raise: a malformed URL is masked as far as it can be read.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A URL in free text: a scheme, then everything up to whitespace, a quote or an angle bracket.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+")
# Punctuation that ends a sentence or a clause rather than the URL before it.
_TRAILING = ".,;:!?)]}"
# Query parameter names that carry a secret, compared lowercased without '-' and '_':
# key, api-key, api_key, x-api-key, subscription-key, access_token, sig (SAS), password, ...
_SECRET_PARAM = re.compile(
    r"(key|token|secret|password|passwd|pwd|sig|signature|auth|authorization|credentials?)$"
)


def mask_url(url: str) -> str:
    """``url`` with its user name, password and secret query parameters replaced by ``***``.

    ``http://user:pass@host/v1?api-key=K&api-version=1`` becomes
    ``http://***:***@host/v1?api-key=***&api-version=1``; a URL without credentials comes back
    unchanged. Both parts of the user information are masked: a user name can be a key too.
    """
    match = _SCHEME.match(url)
    start = match.end() if match else 0
    end = len(url)
    for stop in "/?#":
        found = url.find(stop, start)
        if found != -1:
            end = min(end, found)
    authority = url[start:end]
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        authority = f"{MASK}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    rest, hash_sign, fragment = url[end:].partition("#")
    path, question_mark, query = rest.partition("?")
    return (
        url[:start]
        + authority
        + path
        + question_mark
        + _mask_parameters(query)
        + hash_sign
        + _mask_parameters(fragment)
    )


def mask_urls_in(text: str) -> str:
    """``text`` with every URL in it masked (:func:`mask_url`): for messages and log tails."""
    if "://" not in text:
        return text

    def masked(match: re.Match[str]) -> str:
        url = match.group()
        end = len(url.rstrip(_TRAILING))  # "... at http://h/?key=K: refused": not part of it
        return mask_url(url[:end]) + url[end:]

    return _URL_IN_TEXT.sub(masked, text)


def _mask_parameters(query: str) -> str:
    parts = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        if equals and value and _is_secret_name(name):
            part = f"{name}={MASK}"
        parts.append(part)
    return "&".join(parts)


def _is_secret_name(name: str) -> bool:
    normalized = re.sub(r"[^a-z0-9]", "", unquote(name).lower())
    return bool(_SECRET_PARAM.search(normalized))
