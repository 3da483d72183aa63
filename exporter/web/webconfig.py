"""The web configuration file (``--web.config.file``): TLS, client certificates, basic auth.

The format is the one Prometheus' Go exporters read through exporter-toolkit
(docs/web-configuration.md in prometheus/exporter-toolkit), so an operator can point this
exporter at the file the node exporter next to it already uses::

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: scrapers-ca.crt
      min_version: TLS13
    http_server_config:
      headers:
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG

Where exporter-toolkit has a key this exporter cannot honour with Python's ssl module
(inline ``cert``/``key``/``client_ca``, cipher and curve lists, ``client_allowed_sans``,
``rate_limit``, and the client auth types that accept a certificate without verifying
it), loading fails naming that key rather than silently serving something weaker.
The exporter re-reads the file when it or a file it names changes (exporter/webreload.py).

Every problem is one ``ConfigError`` line, key path first, and never shows a password
hash or key material::

    tls_server_config.client_auth_type: 'RequireAndVerifyClientCerts' is not one of
    NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert; did you mean
    RequireAndVerifyClientCert?
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import bcrypt

from exporter.config.settings import ConfigError, check_keys, did_you_mean, read_yaml

# What Go's crypto/tls client auth types mean, in Python's terms. RequestClientCert and
# RequireAnyClientCert accept a certificate without verifying it, which Python's ssl
# module cannot do; exporter-toolkit's own docs call them insecure.
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = MappingProxyType(
    {
        "NoClientCert": ssl.CERT_NONE,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }
)
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType(
    {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
)

# The response headers exporter-toolkit lets a file set, with their allowed values
# (None: any one-line value).
RESPONSE_HEADERS: Mapping[str, tuple[str, ...] | None] = MappingProxyType(
    {
        "Content-Security-Policy": None,
        "X-Frame-Options": ("deny", "sameorigin"),
        "X-Content-Type-Options": ("nosniff",),
        "X-XSS-Protection": None,
        "Strict-Transport-Security": None,
    }
)

# For the 401 response's WWW-Authenticate header.
BASIC_CHALLENGE = 'Basic realm="codat-freshness-exporter", charset="UTF-8"'

_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_BCRYPT_MAX_PASSWORD = 72  # bcrypt reads no further; htpasswd and Go's bcrypt agree
_AUTH_CACHE_SIZE = 100  # successful logins remembered, as in exporter-toolkit


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"


class WebConfig:
    """A loaded web configuration; ``WebConfig()`` is plain HTTP without authentication.

    ``authorized`` is safe to call from many request threads. A successful login is
    remembered (keyed by an HMAC of the credentials under a per-process random key, so
    the plain password is not kept), so a scrape every 15 s does not pay a bcrypt round
    each time. Failed logins are never cached and run one at a time, so guessing costs at
    most one core however many connections an attacker opens.
    """

    def __init__(
        self,
        tls: TLSServerConfig | None = None,
        headers: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.tls = tls
        self.headers: Mapping[str, str] = MappingProxyType(dict(headers or {}))
        self._users = {
            name: _bcrypt_hash(h, f"basic_auth_users.{name}") for name, h in (users or {}).items()
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

    def __repr__(self) -> str:
        return f"WebConfig({self.summary()})"

    @property
    def auth_required(self) -> bool:
        return bool(self._users)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def summary(self) -> str:
        """One line for the start-up log, e.g. ``TLS (TLS13+), client certificates required,
        basic auth for 2 users``; it never shows a hash."""
        if self.tls is None:
            parts = ["plain HTTP"]
        else:
            parts = [f"TLS ({self.tls.min_version}+)"]
            parts.append(
                {
                    "NoClientCert": "no client certificates",
                    "VerifyClientCertIfGiven": "client certificates verified if given",
                    "RequireAndVerifyClientCert": "client certificates required",
                }[self.tls.client_auth_type]
            )
        n = len(self._users)
        parts.append(f"basic auth for {n} user{'s' * (n != 1)}" if n else "no basic auth")
        return ", ".join(parts)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A fresh server context from the files, or ``None`` for plain HTTP.

        Reads the files each time, so a caller that rebuilds it picks up renewed
        certificates. Raises ``ConfigError`` when a file cannot be used.
        """
        tls = self.tls
        if tls is None:
            return None
        for key, path, marker, what in (
            ("cert_file", tls.cert_file, "CERTIFICATE-----", "certificate"),
            ("key_file", tls.key_file, "PRIVATE KEY-----", "private key"),
        ):
            if marker not in _read(path, f"tls_server_config.{key}"):
                raise ConfigError(f"tls_server_config.{key}: {path} holds no PEM {what}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[tls.min_version]
        context.maximum_version = TLS_VERSIONS[tls.max_version]
        try:
            # Without a password callback OpenSSL would prompt on the terminal for an
            # encrypted key and hang a service start.
            context.load_cert_chain(tls.cert_file, tls.key_file, password=_refuse_password)
        except _EncryptedKeyError:
            raise ConfigError(
                f"tls_server_config.key_file: {tls.key_file} is encrypted; "
                "give the exporter an unencrypted key"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"tls_server_config.key_file: cannot use {tls.key_file} with "
                f"{tls.cert_file} (does the key belong to the certificate?): {exc}"
            ) from None
        if tls.client_ca_file is not None:
            _read(tls.client_ca_file, "tls_server_config.client_ca_file")
            try:
                context.load_verify_locations(cafile=tls.client_ca_file)
            except (ssl.SSLError, OSError):
                raise ConfigError(
                    f"tls_server_config.client_ca_file: {tls.client_ca_file} holds no "
                    "PEM certificate"
                ) from None
        context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
        return context

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


class _EncryptedKeyError(Exception):
    pass


def _refuse_password() -> bytes:
    raise _EncryptedKeyError


def _read(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None


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


def _bcrypt_hash(value: Any, path: str) -> bytes:
    # Never echo the value: it may be a hash, or a password pasted by mistake.
    if not isinstance(value, str):
        raise ConfigError(f"{path}: must be a bcrypt hash (a string starting with $2)")
    if not _BCRYPT_HASH.fullmatch(value.strip()):
        raise ConfigError(
            f"{path}: not a bcrypt hash; make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
        )
    return value.strip().encode("ascii")


# --- loading -----------------------------------------------------------------------------


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate a web config file, including the certificate and key files."""
    return load_web_config_and_context(path)[0]


def load_web_config_and_context(
    path: str | os.PathLike[str],
) -> tuple[WebConfig, ssl.SSLContext | None]:
    """``load_web_config``, and the TLS context it built to validate the files (None for
    plain HTTP): a missing or mismatched file fails now, not at the first scrape."""
    config = parse_web_config(read_yaml(path, "web config file"), Path(path).parent)
    return config, config.ssl_context()


def parse_web_config(raw: Any, base_dir: Path) -> WebConfig:
    """Validate an already-loaded mapping; relative file names are taken from ``base_dir``."""
    top = check_keys(
        raw,
        "",
        ("tls_server_config", "http_server_config", "basic_auth_users"),
        unsupported={"rate_limit": "put a reverse proxy in front if you need one"},
    )
    return WebConfig(
        tls=_tls(top.get("tls_server_config"), base_dir),
        headers=_http(top.get("http_server_config")),
        users=_users(top.get("basic_auth_users")),
    )


_INLINE = "give the PEM in a file instead"
_TLS_UNSUPPORTED = {
    "cert": f"{_INLINE} (cert_file)",
    "key": f"{_INLINE} (key_file)",
    "client_ca": f"{_INLINE} (client_ca_file)",
    "client_allowed_sans": "issue client certificates from a CA only for allowed scrapers",
    "cipher_suites": "Python's defaults are used",
    "curve_preferences": "Python's defaults are used",
    "prefer_server_cipher_suites": "Python's defaults are used",
}


def _tls(raw: Any, base_dir: Path) -> TLSServerConfig | None:
    path = "tls_server_config"
    tls = check_keys(
        raw,
        path,
        (
            "cert_file",
            "key_file",
            "client_ca_file",
            "client_auth_type",
            "min_version",
            "max_version",
        ),
        unsupported=_TLS_UNSUPPORTED,
    )
    if not tls:
        return None
    for key in ("cert_file", "key_file"):
        if tls.get(key) is None:
            raise ConfigError(f"{path}.{key}: required when {path} is set")
    auth = _choice(tls, path, "client_auth_type", "NoClientCert", tuple(CLIENT_AUTH_TYPES))
    min_version = _choice(tls, path, "min_version", "TLS12", tuple(TLS_VERSIONS))
    max_version = _choice(tls, path, "max_version", "TLS13", tuple(TLS_VERSIONS))
    if TLS_VERSIONS[min_version] > TLS_VERSIONS[max_version]:
        raise ConfigError(f"{path}.min_version: {min_version} is above max_version {max_version}")
    client_ca = _file(tls, path, "client_ca_file", base_dir) if tls.get("client_ca_file") else None
    if client_ca is not None and auth == "NoClientCert":
        raise ConfigError(
            f"{path}.client_ca_file: unused with client_auth_type NoClientCert; "
            "set client_auth_type: RequireAndVerifyClientCert"
        )
    if client_ca is None and auth != "NoClientCert":
        raise ConfigError(f"{path}.client_ca_file: required when client_auth_type is {auth}")
    return TLSServerConfig(
        cert_file=_file(tls, path, "cert_file", base_dir),
        key_file=_file(tls, path, "key_file", base_dir),
        client_ca_file=client_ca,
        client_auth_type=auth,
        min_version=min_version,
        max_version=max_version,
    )


def _http(raw: Any) -> dict[str, str]:
    path = "http_server_config"
    # http2 is accepted so shared files load; this server speaks HTTP/1.1 either way.
    http = check_keys(raw, path, ("headers", "http2"))
    if "http2" in http and not isinstance(http["http2"], bool):
        raise ConfigError(f"{path}.http2: must be true or false")
    headers = check_keys(http.get("headers"), f"{path}.headers", tuple(RESPONSE_HEADERS))
    out: dict[str, str] = {}
    for name, value in headers.items():
        where = f"{path}.headers.{name}"
        if value is None or value == "":
            continue  # "Unset if blank", as in exporter-toolkit
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{where}: must be a one-line string")
        allowed = RESPONSE_HEADERS[name]
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{where}: must be one of {', '.join(allowed)}, not {value!r}")
        out[name] = value
    return out


def _users(raw: Any) -> dict[str, str]:
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
        _bcrypt_hash(hashed, f"{path}.{name}")
        users[name] = hashed
    return users


def _choice(
    section: dict[str, Any], path: str, key: str, default: str, allowed: tuple[str, ...]
) -> str:
    value = section.get(key)
    if value is None:
        return default
    if value in allowed:
        return str(value)
    where = f"{path}.{key}"
    if key == "client_auth_type" and value in _UNVERIFIED_CLIENT_AUTH:
        raise ConfigError(
            f"{where}: {value} is not supported by this exporter (it would accept any "
            "certificate); use RequireAndVerifyClientCert with client_ca_file"
        )
    if key.endswith("_version") and value in ("TLS10", "TLS11"):
        raise ConfigError(f"{where}: {value} is not supported; use TLS12 or TLS13")
    suggestion = did_you_mean(str(value), allowed)
    raise ConfigError(f"{where}: {value!r} is not one of {', '.join(allowed)}{suggestion}")


def _file(section: dict[str, Any], path: str, key: str, base_dir: Path) -> Path:
    value = section.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}.{key}: must be a file name")
    return named_file(value, base_dir)


def named_file(value: str, base_dir: Path) -> Path:
    """Where a file name in the web config file points: ``~`` expanded, relative names
    taken from the file's own folder. The reloader stats the same paths, so a renewal of
    ``~/tls/server.crt`` is noticed."""
    return base_dir / Path(value.strip()).expanduser()
