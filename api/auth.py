"""API keys: kept only as SHA-256 digests; a caller is known by a short id derived from its key's digest.

The id (never the key) appears in logs and metrics and owns the conversations the key creates.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass

from configs.settings import ApiSettings, ConfigError

logger = logging.getLogger(__name__)

_HASHED = re.compile(r"^sha256:([0-9a-f]{64})$")
DEV_CALLER_ID = "local-dev"


@dataclass(frozen=True)
class Caller:
    """Who sent a request: `id` owns threads and rate-limit buckets."""

    id: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The accepted keys' digests. Empty only in development mode, where every request is the dev caller."""

    def __init__(self, digests: list[str], *, dev_mode: bool) -> None:
        self._digests = digests
        self.dev_mode = dev_mode

    @classmethod
    def from_settings(cls, api: ApiSettings) -> KeyStore:
        if not api.api_keys and not api.dev_mode:
            raise ConfigError(
                "no API keys configured: set api.api_keys (e.g. APP__API__API_KEYS='[\"<key>\"]', raw or "
                "'sha256:<hex>') or start in local development mode (python -m api --dev, 127.0.0.1 only)"
            )
        digests = []
        for key in api.api_keys:
            value = key.get_secret_value()
            hashed = _HASHED.match(value)
            digests.append(hashed.group(1) if hashed else digest(value))
        return cls(digests, dev_mode=api.dev_mode and not digests)

    def identify(self, presented: str) -> Caller | None:
        """The caller a presented key belongs to, or None. Compares digests in constant time."""
        presented_digest = digest(presented)
        for known in self._digests:
            if hmac.compare_digest(presented_digest, known):
                return Caller(id=known[:12])
        return None
