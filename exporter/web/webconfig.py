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

This module reads the file and its ``http_server_config``; ``exporter.web.tls`` and
``exporter.web.basicauth`` own the other two sections, each with what it does at run time.

Where exporter-toolkit has a key this exporter cannot honour with Python's ssl module
(inline ``cert``/``key``/``client_ca``, cipher and curve lists, ``client_allowed_sans``,
``rate_limit``, and the client auth types that accept a certificate without verifying
it), loading fails naming that key rather than silently serving something weaker.
The exporter re-reads the file when it or a file it names changes (``exporter.web.reload``).

Every problem is one ``ConfigError`` line, key path first, and never shows a password
hash or key material::

    tls_server_config.client_auth_type: 'RequireAndVerifyClientCerts' is not one of
    NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert; did you mean
    RequireAndVerifyClientCert?
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exporter.config.settings import ConfigError, check_keys, read_yaml
from exporter.web.basicauth import BasicAuth, parse_users
from exporter.web.tls import TLSServerConfig, parse_tls

RESPONSE_HEADERS: Mapping[str, tuple[str, ...] | None] = MappingProxyType(
    {
        "Content-Security-Policy": None,
        "X-Frame-Options": ("deny", "sameorigin"),
        "X-Content-Type-Options": ("nosniff",),
        "X-XSS-Protection": None,
        "Strict-Transport-Security": None,
    }
)
"""The response headers exporter-toolkit lets a file set, with their allowed values (None:
any one-line value)."""


class WebConfig:
    """A loaded web configuration; ``WebConfig()`` is plain HTTP without authentication."""

    def __init__(
        self,
        tls: TLSServerConfig | None = None,
        headers: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.tls = tls
        self.headers: Mapping[str, str] = MappingProxyType(dict(headers or {}))
        self._auth = BasicAuth(users or {})

    def __repr__(self) -> str:
        return f"WebConfig({self.summary()})"

    @property
    def auth_required(self) -> bool:
        return bool(self._auth)

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
        n = len(self._auth)
        parts.append(f"basic auth for {n} user{'s' * (n != 1)}" if n else "no basic auth")
        return ", ".join(parts)

    def authorized(self, authorization_header: str | None) -> bool:
        """Whether a request with this ``Authorization`` header may proceed (``BasicAuth``)."""
        return self._auth.authorized(authorization_header)

    def authorized_at_once(self, authorization_header: str | None) -> bool | None:
        """``authorized`` when known without a bcrypt round, else None (``BasicAuth``)."""
        return self._auth.authorized_at_once(authorization_header)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A fresh server context from the files (``TLSServerConfig.ssl_context``), or
        ``None`` for plain HTTP."""
        return None if self.tls is None else self.tls.ssl_context()


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
        tls=parse_tls(top.get("tls_server_config"), base_dir),
        headers=_http(top.get("http_server_config")),
        users=parse_users(top.get("basic_auth_users")),
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
