"""The web configuration in force, re-read when its files change.

exporter-toolkit re-reads ``--web.config.file`` for every connection, and operators count
on it: cert-manager renews a certificate every few weeks, and a rotated scrape password
should not need a restart. ``ReloadingWebConfig`` does the same at most once a second: on
a new connection it compares the modification stamps of the web config file and of the
certificate, key and client CA files it names, and loads them again when one changed.

A file that no longer loads (a key written before its certificate, a typo) is logged
once per change and the last good configuration stays, so a half-finished renewal never
takes the scrape endpoint down::

    web config /etc/exporter/web.yml not reloaded, keeping the last good one:
    tls_server_config.key_file: cannot use server.key with server.crt (...)

Turning TLS on or off changes the listener's scheme, so it still needs a restart.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from exporter.config.settings import ConfigError
from exporter.web.tls import named_file
from exporter.web.webconfig import WebConfig, load_web_config_and_context

log = logging.getLogger(__name__)

CHECK_EVERY = 1.0
"""Seconds between two looks at the files' stamps."""
WEB_CONFIG_FLAG = "--web.config.file"
"""The flag that names the file."""

FileStamp = tuple[str, int, int, int] | None
Stamp = tuple[FileStamp, ...]


def _named_files(path: Path) -> list[Path]:
    """The certificate, key and CA files the web config file names now, read without
    validating anything: a reload that failed is retried when one of them appears."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return []
    tls = raw.get("tls_server_config") if isinstance(raw, dict) else None
    if not isinstance(tls, dict):
        return []
    names = [tls.get(key) for key in ("cert_file", "key_file", "client_ca_file")]
    return [
        named_file(name, path.parent) for name in names if isinstance(name, str) and name.strip()
    ]


def _file_stamp(file: Path) -> FileStamp:
    try:
        status = os.stat(file)
    except (OSError, ValueError):
        return None
    return (str(file), status.st_mtime_ns, status.st_size, status.st_ino)


class ReloadingWebConfig:
    """The current ``WebConfig`` and its TLS context; ``fixed`` for one that never changes."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        config: WebConfig | None = None,
    ) -> None:
        self._path = Path(path) if path is not None else None
        self._named_for: FileStamp = None
        self._named: list[Path] = []
        self._stamp = self._current_stamp()
        if config is not None or self._path is None:
            self._config = config or WebConfig()
            self._context = self._config.ssl_context()
        else:
            self._config, self._context = load_web_config_and_context(self._path)
        self._rejected: Stamp | None = None
        self._monotonic = monotonic
        self._checked = monotonic()
        self._lock = threading.Lock()

    @classmethod
    def fixed(cls, config: WebConfig) -> ReloadingWebConfig:
        return cls(None, config=config)

    def _current_stamp(self) -> Stamp:
        """What a change shows in: the file and the files it names. The names are read
        again only when the file itself changed; the rest is a stat per file."""
        if self._path is None:
            return ()
        own = _file_stamp(self._path)
        if own != self._named_for:
            self._named_for, self._named = own, _named_files(self._path)
        return (own, *map(_file_stamp, self._named))

    @property
    def config(self) -> WebConfig:
        self._maybe_reload()
        return self._config

    @property
    def context(self) -> ssl.SSLContext | None:
        """The server context for the next connection; None for plain HTTP."""
        self._maybe_reload()
        return self._context

    def _maybe_reload(self) -> None:
        if self._path is None or self._monotonic() - self._checked < CHECK_EVERY:
            return
        with self._lock:
            now = self._monotonic()
            if now - self._checked < CHECK_EVERY:
                return
            self._checked = now
            stamp = self._current_stamp()  # before loading: a change meanwhile is seen next
            if stamp in (self._stamp, self._rejected):
                return
            try:
                config, context = load_web_config_and_context(self._path)
                if (config.tls is None) != (self._config.tls is None):
                    raise ConfigError("tls_server_config: turning TLS on or off needs a restart")
            except Exception as exc:  # runs in the accept loop: nothing may stop serving
                expected = isinstance(exc, ConfigError)
                log.error("web config %s not reloaded, keeping the last good one: %s",
                          self._path, exc if expected else "unexpected error",
                          exc_info=not expected)  # fmt: skip
                self._rejected = stamp
                return
            self._config, self._context = config, context
            self._stamp, self._rejected = stamp, None
            log.info("web config %s reloaded: %s", self._path, config.summary())
