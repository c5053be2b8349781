"""The API keys of CART_API_KEYS, matched in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from pydantic import SecretStr


class ApiKeyRing:
    """The configured API keys, matched without telling by timing which key matched, or whether any.

    A loop that returns at the first match answers sooner for the first client than the last, and
    ``hmac.compare_digest`` on values of different lengths returns at once: both leak. So the sent
    key and every configured key are compared as SHA-256 digests (always 32 bytes), against every
    key, every time.
    """

    def __init__(self, keys: Mapping[str, SecretStr]) -> None:
        self._digests = [(name, _digest(key.get_secret_value())) for name, key in keys.items()]

    def client(self, sent: str) -> str | None:
        """The name of the client whose key ``sent`` is, or None."""
        digest = _digest(sent)
        found: str | None = None
        for name, key in self._digests:
            # no early exit: the loop's length does not depend on where (or whether) it matches
            matched = hmac.compare_digest(digest, key)
            found = name if matched else found
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
