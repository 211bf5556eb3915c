"""What hubpub accepts as a URL: one check for every URL a user gives (the manifest's, `--public-url`).

These URLs end up in docs, Markdown links, HTML and code that users run (snippets, notebooks), so a
URL is held to RFC 3986: a scheme, a host name, and only the characters a URL may hold. Quotes,
spaces, backslashes, angle brackets and parentheses, which would end a string literal, a Markdown
link or a comment, cannot appear. (Code templates also write values as literals: two walls.)
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

# RFC 3986's unreserved and reserved characters and percent escapes, without ' ( ) (sub-delims that
# end a Markdown link or a quoted string).
_URL_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&*+,;=]|%[0-9A-Fa-f]{2})+")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"|\[[0-9A-Fa-f:.]+\]")
MAX_URL = 2048


def check_url(value: str, schemes: tuple[str, ...] = ("https", "http"), *, base: bool = False) -> str:
    """`value` if it is a URL of one of `schemes`, else `ValueError` saying why. A `base` (what paths are
    appended to) has no query or fragment."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a URL: {value!r}")
    if len(value) > MAX_URL:
        raise ValueError(f"a URL of {len(value):,} characters; at most {MAX_URL:,}")
    parsed = urlparse(value)
    if parsed.scheme not in schemes:
        raise ValueError(f"not a valid {'/'.join(schemes)} URL: {value!r}")
    if not _URL_CHARS.fullmatch(value):
        bad = next((repr(c) for c in value if not _URL_CHARS.fullmatch(c) and c != "%"), "a bad percent escape")
        raise ValueError(f"not a valid URL: {value!r} holds {bad}, which a URL may not (percent-encode it)")
    if parsed.scheme != "file":
        host = parsed.netloc.rsplit("@", 1)[-1]
        host, _, port = host.rpartition(":") if not host.endswith("]") and ":" in host else (host, "", "")
        if not parsed.netloc or not _HOST.fullmatch(host) or (port and not port.isdigit()):
            raise ValueError(f"not a valid {'/'.join(schemes)} URL: {value!r} (no valid host name)")
    if base and (parsed.query or parsed.fragment or "?" in value or "#" in value):
        raise ValueError(f"a base URL has no query or fragment: {value!r}")
    return value
