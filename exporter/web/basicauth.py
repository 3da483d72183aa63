"""The web config file's ``basic_auth_users``: what it may say, and checking a request's
credentials against it.

Apart from the rest of the file because checking is where the cost and the risk are: a
bcrypt round takes a fraction of a second of CPU, so what passed is remembered, what fails
runs one at a time, and an unknown user costs the same round as a known one::

    basic_auth_users:
      prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG

No message here ever shows a hash or a password: a value that is not a bcrypt hash may be
a password pasted by mistake.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import bcrypt

from exporter.config.settings import ConfigError

BASIC_CHALLENGE = 'Basic realm="codat-freshness-exporter", charset="UTF-8"'
"""The 401 answer's ``WWW-Authenticate`` header."""

_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_BCRYPT_MAX_PASSWORD = 72  # bcrypt reads no further; htpasswd and Go's bcrypt agree
_AUTH_CACHE_SIZE = 100  # successful logins remembered, as in exporter-toolkit


class BasicAuth:
    """The users of ``basic_auth_users`` and their bcrypt hashes; no users: no auth.

    ``authorized`` is safe to call from many request threads. A successful login is
    remembered (keyed by an HMAC of the credentials under a per-process random key, so
    the plain password is not kept), so a scrape every 15 s does not pay a bcrypt round
    each time. Failed logins are never cached and run one at a time, so guessing costs at
    most one core however many connections an attacker opens.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {
            name: bcrypt_hash(h, f"basic_auth_users.{name}") for name, h in users.items()
        }
        # Unknown users are checked against this hash, so the response time does not tell
        # which user names exist. Same cost as the costliest real hash.
        self._decoy = b""
        if self._users:
            cost = max(int(h[4:6]) for h in self._users.values())
            self._decoy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
        self._cache_key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    def __len__(self) -> int:
        """Users configured; none means no basic auth."""
        return len(self._users)

    def authorized_at_once(self, authorization_header: str | None) -> bool | None:
        """``authorized`` when it is known without a bcrypt round (no users, no credentials,
        credentials that passed before); None when only bcrypt can tell. The listener's
        front answers health probes itself only when this is not None: it must not stall
        every other connection for a bcrypt round."""
        if not self._users:
            return True
        credentials = _basic_credentials(authorization_header)
        if credentials is None:
            return False
        cache_key = hmac.new(self._cache_key, credentials, hashlib.sha256).digest()
        with self._cache_lock:
            if self._cache.get(cache_key) is None:
                return None
            self._cache.move_to_end(cache_key)
            return True

    def authorized(self, authorization_header: str | None) -> bool:
        """Whether a request with this ``Authorization`` header may proceed.

        True for any request when no users are configured; otherwise only for
        ``Basic`` credentials whose password matches the user's bcrypt hash.
        """
        known = self.authorized_at_once(authorization_header)
        if known is not None:
            return known
        credentials = _basic_credentials(authorization_header)
        if credentials is None:
            return False
        cache_key = hmac.new(self._cache_key, credentials, hashlib.sha256).digest()
        user_bytes, _, password = credentials.partition(b":")
        try:
            user: str | None = user_bytes.decode("utf-8")
        except UnicodeDecodeError:
            user = None
        hashed = self._users.get(user) if user is not None else None
        with self._bcrypt_lock:
            # bcrypt compares in constant time; an unknown user costs the same round.
            matches = bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed or self._decoy)
        if not matches or hashed is None or user is None:
            return False
        with self._cache_lock:
            self._cache[cache_key] = user
            while len(self._cache) > _AUTH_CACHE_SIZE:
                self._cache.popitem(last=False)
        return True


def _basic_credentials(header: str | None) -> bytes | None:
    """``Basic dXNlcjpwYXNz`` -> ``b"user:pass"``; ``None`` for anything else."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        return None
    return decoded if b":" in decoded else None


def bcrypt_hash(value: Any, path: str) -> bytes:
    """The hash at ``path`` of the file, checked; the message never echoes the value."""
    if not isinstance(value, str):
        raise ConfigError(f"{path}: must be a bcrypt hash (a string starting with $2)")
    if not _BCRYPT_HASH.fullmatch(value.strip()):
        raise ConfigError(
            f"{path}: not a bcrypt hash; make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
        )
    return value.strip().encode("ascii")


def parse_users(raw: Any) -> dict[str, str]:
    """The section, checked: user names to their hashes; {} when it is absent."""
    path = "basic_auth_users"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of user name to bcrypt hash")
    users: dict[str, str] = {}
    for position, (name, hashed) in enumerate(raw.items(), 1):
        if isinstance(name, str) and ":" in name:
            # Not echoed: such a name is most likely a pasted htpasswd line (user:hash) or
            # user:password.
            raise ConfigError(
                f"{path}: user name {position} contains ':'; write each user as "
                "`name: <bcrypt hash>`, not htpasswd's name:hash"
            )
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}: user name {name!r} must be a non-empty string")
        bcrypt_hash(hashed, f"{path}.{name}")
        users[name] = hashed
    return users
