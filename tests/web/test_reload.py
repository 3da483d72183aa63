"""--web.config.file is re-read when it or its certificate files change, as exporter-toolkit
does: a renewed certificate or a rotated password takes effect on the next connection, and
a file that does not load leaves the last good configuration serving.

Files are replaced the way cert-manager and Kubernetes secret volumes do it (a new file
renamed over the old), and the reload check is driven by the injected clock.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests
import trustme

from exporter.web.reload import CHECK_EVERY, ReloadingWebConfig
from exporter.web.server import ExporterServer
from tests.harness import FakeClock, Harness

USER = "prometheus"


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def replace(path: Path, text: str | bytes) -> None:
    """Write a new file and rename it over ``path``, as secret volumes and cert-manager do."""
    new = path.with_name(path.name + ".new")
    new.write_bytes(text.encode() if isinstance(text, str) else text)
    os.replace(new, path)


def write_config(folder: Path, *, password: str, tls: bool = True) -> Path:
    lines = []
    if tls:
        lines += ["tls_server_config:", "  cert_file: server.pem", "  key_file: server.key"]
    lines += ["basic_auth_users:", f"  {USER}: {bcrypt_hash(password)}"]
    path = folder / "web-config.yml"
    replace(path, "\n".join(lines) + "\n")
    return path


def issue(ca: trustme.CA, folder: Path) -> bytes:
    """A new server certificate for 127.0.0.1 into the folder; its DER form."""
    leaf = ca.issue_cert("127.0.0.1")
    replace(folder / "server.key", leaf.private_key_pem.bytes())
    replace(folder / "server.pem", b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    return der(leaf)


def der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


@pytest.fixture
def ca(tmp_path: Path) -> trustme.CA:
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return authority


@pytest.fixture
def serve(
    harness: Harness, clock: FakeClock
) -> Iterator[Callable[[Path], tuple[ExporterServer, ReloadingWebConfig]]]:
    harness.poll()
    started: list[ExporterServer] = []

    def start(path: Path) -> tuple[ExporterServer, ReloadingWebConfig]:
        web_config = ReloadingWebConfig(path, clock.monotonic)
        server = ExporterServer(
            "127.0.0.1:0", harness.store, harness.metrics, clock, web_config=web_config
        )
        server.start()
        started.append(server)
        return server, web_config

    yield start
    for server in started:
        server.stop()


Serve = Callable[[Path], tuple[ExporterServer, ReloadingWebConfig]]


@dataclass
class Tls:
    """A TLS listener with basic auth (password ``old``) over files in ``folder``."""

    server: ExporterServer
    web_config: ReloadingWebConfig
    first: bytes
    """The certificate it serves at start, DER."""
    folder: Path
    ca: trustme.CA

    def served(self) -> bytes:
        return served_certificate(self.server, self.folder / "ca.pem")

    def status(self, password: str) -> int:
        return status(self.server, password, self.folder / "ca.pem")


@pytest.fixture
def tls(tmp_path: Path, ca: trustme.CA, serve: Serve) -> Tls:
    first = issue(ca, tmp_path)
    server, web_config = serve(write_config(tmp_path, password="old"))
    return Tls(server, web_config, first, tmp_path, ca)


def served_certificate(server: ExporterServer, ca_file: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_file))
    port = int(server.server_address[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def status(server: ExporterServer, password: str, ca_file: Path | None = None) -> int:
    verify: str | bool = str(ca_file) if ca_file else True
    response = requests.get(
        server.url + "/metrics", auth=(USER, password), verify=verify, timeout=5
    )
    return response.status_code


def test_should_serve_a_renewed_certificate_from_the_next_connection(
    tls: Tls, clock: FakeClock
) -> None:
    # Prepare
    assert tls.served() == tls.first

    # Act
    renewed = issue(tls.ca, tls.folder)
    within_the_second = tls.served()
    clock.advance(CHECK_EVERY)
    after = tls.served()

    # Check
    assert renewed != tls.first
    assert within_the_second == tls.first
    assert after == renewed
    assert tls.status("old") == 200


def test_should_take_a_rotated_password_without_a_restart(
    tmp_path: Path,
    clock: FakeClock,
    serve: Serve,
) -> None:
    # Prepare
    server, _ = serve(write_config(tmp_path, password="old", tls=False))
    assert status(server, "old") == 200

    # Act
    write_config(tmp_path, password="new", tls=False)
    clock.advance(CHECK_EVERY)

    # Check
    assert status(server, "old") == 401
    assert status(server, "new") == 200


def test_should_keep_the_last_good_config_while_a_renewal_is_half_written(
    tls: Tls, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    renewal = tls.ca.issue_cert("127.0.0.1")

    # Act: the new certificate lands before its key
    replace(tls.folder / "server.pem", b"".join(blob.bytes() for blob in renewal.cert_chain_pems))
    clock.advance(CHECK_EVERY)
    during = [tls.served() for _ in range(2)]
    clock.advance(CHECK_EVERY)
    tls.served()
    replace(tls.folder / "server.key", renewal.private_key_pem.bytes())
    clock.advance(CHECK_EVERY)
    after = tls.served()

    # Check: the old pair served throughout, the failure logged once, then the new pair
    assert during == [tls.first, tls.first]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "keeping the last good one" in errors[0]
    assert "tls_server_config.key_file" in errors[0]
    assert after == der(renewal)


def test_should_pick_up_certificate_files_that_appear_after_the_config_names_them(
    tls: Tls, clock: FakeClock
) -> None:
    # Prepare
    config = (tls.folder / "web-config.yml").read_text()

    # Act: the config names new files first (that reload fails), then they are written
    replace(tls.folder / "web-config.yml", config.replace("server.", "renewed."))
    clock.advance(CHECK_EVERY)
    before = tls.served()
    leaf = tls.ca.issue_cert("127.0.0.1")
    replace(tls.folder / "renewed.key", leaf.private_key_pem.bytes())
    replace(tls.folder / "renewed.pem", b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    clock.advance(CHECK_EVERY)
    after = tls.served()

    # Check
    assert before == tls.first
    assert after == der(leaf)


def test_should_refuse_to_turn_tls_off_without_a_restart(
    tls: Tls, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Act
    write_config(tls.folder, password="new", tls=False)
    clock.advance(CHECK_EVERY)
    answer = tls.status("old")

    # Check
    assert answer == 200
    assert tls.web_config.config.scheme == "https"
    assert any("turning TLS on or off needs a restart" in r.getMessage() for r in caplog.records)


def test_should_never_log_a_password_hash_when_a_reload_fails(
    tmp_path: Path,
    clock: FakeClock,
    serve: Serve,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare
    server, _ = serve(write_config(tmp_path, password="old", tls=False))
    leaked = bcrypt_hash("new")

    # Act: a pasted htpasswd line (user:hash) instead of a mapping entry
    replace(tmp_path / "web-config.yml", f"basic_auth_users:\n  - {USER}:{leaked}\n")
    clock.advance(CHECK_EVERY)
    answer = status(server, "old")

    # Check
    assert answer == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "not reloaded" in logged
    assert leaked not in logged and leaked[7:] not in logged


def test_should_serve_a_renewed_certificate_named_from_the_home_folder(
    tmp_path: Path, ca: trustme.CA, clock: FakeClock, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    first = issue(ca, home)
    config = tmp_path / "web-config.yml"
    replace(config, "tls_server_config:\n  cert_file: ~/server.pem\n  key_file: ~/server.key\n")
    server, _ = serve(config)

    # Act
    renewed = issue(ca, home)
    clock.advance(CHECK_EVERY)
    after = served_certificate(server, tmp_path / "ca.pem")

    # Check
    assert renewed != first
    assert after == renewed
