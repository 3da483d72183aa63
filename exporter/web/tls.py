"""The web config file's ``tls_server_config``: what it may say, and the server SSL context
built from the files it names.

Apart from the rest of the file because it is the one section that reads other files
(certificate, key, client CA) and maps Go's crypto/tls vocabulary onto Python's ssl module;
the reloader (``exporter.web.reload``) rebuilds the context when those files change::

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to the web config file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: scrapers-ca.crt
      min_version: TLS13
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exporter.config.settings import ConfigError, check_keys, did_you_mean

CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = MappingProxyType(
    {
        "NoClientCert": ssl.CERT_NONE,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }
)
"""What Go's crypto/tls client auth types mean, in Python's terms. RequestClientCert and
RequireAnyClientCert accept a certificate without verifying it, which Python's ssl module
cannot do; exporter-toolkit's own docs call them insecure."""
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType(
    {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
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


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"

    def ssl_context(self) -> ssl.SSLContext:
        """A fresh server context from the files.

        Reads the files each time, so a caller that rebuilds it picks up renewed
        certificates. Raises ``ConfigError`` when a file cannot be used.
        """
        for key, path, marker, what in (
            ("cert_file", self.cert_file, "CERTIFICATE-----", "certificate"),
            ("key_file", self.key_file, "PRIVATE KEY-----", "private key"),
        ):
            if marker not in _read(path, f"tls_server_config.{key}"):
                raise ConfigError(f"tls_server_config.{key}: {path} holds no PEM {what}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        context.maximum_version = TLS_VERSIONS[self.max_version]
        try:
            # Without a password callback OpenSSL would prompt on the terminal for an
            # encrypted key and hang a service start.
            context.load_cert_chain(self.cert_file, self.key_file, password=_refuse_password)
        except _EncryptedKeyError:
            raise ConfigError(
                f"tls_server_config.key_file: {self.key_file} is encrypted; "
                "give the exporter an unencrypted key"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"tls_server_config.key_file: cannot use {self.key_file} with "
                f"{self.cert_file} (does the key belong to the certificate?): {exc}"
            ) from None
        if self.client_ca_file is not None:
            _read(self.client_ca_file, "tls_server_config.client_ca_file")
            try:
                context.load_verify_locations(cafile=self.client_ca_file)
            except (ssl.SSLError, OSError):
                raise ConfigError(
                    f"tls_server_config.client_ca_file: {self.client_ca_file} holds no "
                    "PEM certificate"
                ) from None
        context.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        return context


class _EncryptedKeyError(Exception):
    pass


def _refuse_password() -> bytes:
    raise _EncryptedKeyError


def _read(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None


def parse_tls(raw: Any, base_dir: Path) -> TLSServerConfig | None:
    """The section, checked; None when it is absent or empty (plain HTTP)."""
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
