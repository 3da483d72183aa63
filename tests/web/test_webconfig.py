"""The web config file: validation, basic auth, and real TLS round trips on loopback."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from exporter.config.settings import ConfigError
from exporter.web.basicauth import BASIC_CHALLENGE
from exporter.web.webconfig import WebConfig, load_web_config
from tests.promtools import ROOT

INVALID = sorted((ROOT / "tests" / "fixtures" / "webconfig").glob("*.yml"))
PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def expected_error(fixture: Path) -> str:
    first = fixture.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{fixture.name} must start with '# error: ...'"
    return first.removeprefix("# error: ")


# --- throwaway certificates, made once per module run ---------------------------------


@dataclass(frozen=True)
class Pki:
    server_ca: Path  # what clients trust
    server_cert: Path
    server_key: Path
    client_ca: Path  # what the server trusts for client certificates
    client: Path  # key and chain of a client the client CA issued
    stranger: Path  # key and chain of a client from another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, other_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    pki = Pki(
        server_ca=folder / "server-ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_ca=folder / "client-ca.pem",
        client=folder / "client.pem",
        stranger=folder / "stranger.pem",
    )
    server_ca.cert_pem.write_to_path(str(pki.server_ca))
    server.private_key_pem.write_to_path(str(pki.server_key))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(pki.server_cert), append=i > 0)
    client_ca.cert_pem.write_to_path(str(pki.client_ca))
    client_ca.issue_cert("scraper@example.com").private_key_and_cert_chain_pem.write_to_path(
        str(pki.client)
    )
    other_ca.issue_cert("scraper@example.com").private_key_and_cert_chain_pem.write_to_path(
        str(pki.stranger)
    )
    return pki


def write_config(folder: Path, text: str) -> Path:
    path = folder / "web.yml"
    path.write_text(text)
    return path


def tls_config(folder: Path, pki: Pki, **extra: str) -> WebConfig:
    lines = [
        "tls_server_config:",
        f"  cert_file: {pki.server_cert}",
        f"  key_file: {pki.server_key}",
        *(f"  {key}: {value}" for key, value in extra.items()),
    ]
    return load_web_config(write_config(folder, "\n".join(lines) + "\n"))


def mutual_tls_config(folder: Path, pki: Pki) -> WebConfig:
    """TLS that requires a client certificate from the client CA."""
    return tls_config(
        folder, pki, client_auth_type="RequireAndVerifyClientCert",
        client_ca_file=str(pki.client_ca),
    )  # fmt: skip


# --- a tiny server wired the way the exporter will wire it -------------------------------


class Handler(BaseHTTPRequestHandler):
    server: TinyServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        config = self.server.web_config
        if config.authorized(self.headers.get("Authorization")):
            status, body, extra = 200, b"ok\n", dict(config.headers)
        else:
            status, body, extra = 401, b"unauthorized\n", {"WWW-Authenticate": BASIC_CHALLENGE}
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class TinyServer(ThreadingHTTPServer):
    # Not daemon threads: server_close() then waits for every request thread, so the
    # errors they recorded are complete when a test looks at them.
    daemon_threads = False

    def __init__(self, web_config: WebConfig) -> None:
        self.web_config = web_config
        self.errors: list[str] = []
        super().__init__(("127.0.0.1", 0), Handler)
        context = web_config.ssl_context()
        if context is not None:
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Refused handshakes surface here, in the request's thread; keep them, quietly.
        self.errors.append(repr(sys.exc_info()[1]))


@contextmanager
def serving(config: WebConfig) -> Iterator[TinyServer]:
    server = TinyServer(config)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def client_context(pki: Pki, cert: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.server_ca)
    if cert is not None:
        context.load_cert_chain(cert)
    return context


def get(
    port: int, context: ssl.SSLContext | None, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    conn.request("GET", "/metrics", headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


# --- loading -----------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", INVALID, ids=[f.stem for f in INVALID])
def test_should_reject_invalid_file_with_one_line_naming_the_key(fixture: Path) -> None:
    # Prepare
    expected = expected_error(fixture)
    # Act
    with pytest.raises(ConfigError) as raised:
        load_web_config(fixture)
    # Check
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    assert "$2y$" not in message
    assert "hunter2" not in message


def test_should_load_a_full_file_with_paths_relative_to_it(tmp_path: Path, pki: Pki) -> None:
    # Prepare
    tls = tmp_path / "tls"
    tls.mkdir()
    for source in (pki.server_cert, pki.server_key, pki.client_ca):
        (tls / source.name).write_bytes(source.read_bytes())
    path = write_config(
        tmp_path,
        "tls_server_config:\n"
        "  cert_file: tls/server.pem\n"
        "  key_file: tls/server.key\n"
        "  client_ca_file: tls/client-ca.pem\n"
        "  client_auth_type: VerifyClientCertIfGiven\n"
        "  min_version: TLS13\n"
        "http_server_config:\n"
        "  http2: false\n"
        "  headers:\n"
        "    X-Content-Type-Options: nosniff\n"
        "    X-Frame-Options: deny\n"
        "    Content-Security-Policy: ''\n"
        "basic_auth_users:\n"
        f"  prometheus: {HASH}\n",
    )
    # Act
    config = load_web_config(path)
    # Check
    assert config.tls is not None
    assert config.tls.cert_file == tmp_path / "tls" / "server.pem"
    assert config.tls.client_auth_type == "VerifyClientCertIfGiven"
    assert config.headers == {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "deny"}
    assert config.scheme == "https"
    assert config.auth_required
    context = config.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert config.summary() == (
        "TLS (TLS13+), client certificates verified if given, basic auth for 1 user"
    )


def test_should_treat_an_empty_file_as_plain_http_without_auth(tmp_path: Path) -> None:
    # Act
    config = load_web_config(write_config(tmp_path, "# nothing yet\n"))
    # Check
    assert config.tls is None
    assert config.ssl_context() is None
    assert config.authorized(None)
    assert config.summary() == "plain HTTP, no basic auth"


def test_should_never_show_hashes_in_repr_or_summary(tmp_path: Path) -> None:
    # Act
    config = load_web_config(write_config(tmp_path, f"basic_auth_users:\n  alice: {HASH}\n"))
    # Check
    assert HASH not in repr(config)
    assert HASH[7:20] not in config.summary()


def test_should_refuse_a_key_that_does_not_belong_to_the_certificate(
    tmp_path: Path, pki: Pki
) -> None:
    # Prepare
    other = trustme.CA().issue_cert("127.0.0.1")
    wrong_key = tmp_path / "wrong.key"
    other.private_key_pem.write_to_path(str(wrong_key))
    path = write_config(
        tmp_path, f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {wrong_key}\n"
    )
    # Act
    with pytest.raises(ConfigError) as raised:
        load_web_config(path)
    # Check
    assert str(raised.value).startswith("tls_server_config.key_file: cannot use ")
    assert "PRIVATE KEY" not in str(raised.value)


def test_should_refuse_an_encrypted_key_instead_of_prompting(tmp_path: Path, pki: Pki) -> None:
    # Prepare
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        )
    )
    path = write_config(
        tmp_path, f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {encrypted}\n"
    )
    # Act
    with pytest.raises(ConfigError) as raised:
        load_web_config(path)
    # Check
    assert str(raised.value) == (
        f"tls_server_config.key_file: {encrypted} is encrypted; "
        "give the exporter an unencrypted key"
    )


@pytest.mark.parametrize(
    ("key", "content", "expected"),
    [
        ("cert_file", "not a certificate", "holds no PEM certificate"),
        ("key_file", "not a key", "holds no PEM private key"),
        ("client_ca_file", "-----BEGIN CERTIFICATE-----\n", "holds no PEM certificate"),
    ],
)
def test_should_name_the_file_that_is_not_pem(
    tmp_path: Path, pki: Pki, key: str, content: str, expected: str
) -> None:
    # Prepare
    bad = tmp_path / "bad.pem"
    bad.write_text(content)
    files = {
        "cert_file": pki.server_cert,
        "key_file": pki.server_key,
        "client_ca_file": pki.client_ca,
    }
    files[key] = bad
    path = write_config(
        tmp_path,
        "tls_server_config:\n"
        + "".join(f"  {k}: {v}\n" for k, v in files.items())
        + "  client_auth_type: RequireAndVerifyClientCert\n",
    )
    # Act
    with pytest.raises(ConfigError) as raised:
        load_web_config(path)
    # Check
    assert str(raised.value) == f"tls_server_config.{key}: {bad} {expected}"


# --- basic auth --------------------------------------------------------------------------


@pytest.fixture
def users_config() -> WebConfig:
    return WebConfig(users={"prometheus": HASH, "grafana": HASH})


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (basic("prometheus", PASSWORD), True),
        ("basic " + basic("prometheus", PASSWORD).split()[1], True),
        (basic("prometheus", PASSWORD + " "), False),
        (basic("prometheus", "hunter2"), False),
        (basic("nobody", PASSWORD), False),
        (basic("", PASSWORD), False),
        (None, False),
        ("", False),
        ("Bearer abc", False),
        ("Basic not-base64!", False),
        ("Basic " + base64.b64encode(b"no-colon").decode(), False),
        ("Basic " + base64.b64encode(b"\xff\xfe:" + PASSWORD.encode()).decode(), False),
        ("Basic ünïcode", False),
    ],
    ids=[
        "right", "scheme-lowercase", "trailing-space", "wrong", "unknown-user", "empty-user",
        "missing", "empty", "bearer", "bad-base64", "no-colon", "user-not-utf8", "non-ascii",
    ],
)  # fmt: skip
def test_should_let_in_only_the_right_password(
    users_config: WebConfig, header: str | None, allowed: bool
) -> None:
    # Act
    result = users_config.authorized(header)
    # Check
    assert result is allowed


def count_bcrypt_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(1)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def test_should_pay_bcrypt_once_for_repeated_scrapes(
    users_config: WebConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    calls = count_bcrypt_checks(monkeypatch)
    header = basic("prometheus", PASSWORD)
    # Act
    results = [users_config.authorized(header) for _ in range(20)]
    # Check
    assert all(results)
    assert len(calls) == 1


def test_should_check_every_wrong_password_and_unknown_user(
    users_config: WebConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a cached success must not open the door to other passwords
    assert users_config.authorized(basic("prometheus", PASSWORD))
    calls = count_bcrypt_checks(monkeypatch)
    # Act
    wrong = [users_config.authorized(basic("prometheus", "guess")) for _ in range(3)]
    unknown = users_config.authorized(basic("mallory", PASSWORD))
    # Check: unknown users cost a bcrypt round too, so timing does not reveal names
    assert wrong == [False, False, False]
    assert unknown is False
    assert len(calls) == 4


def test_should_ignore_bytes_past_72_as_bcrypt_does() -> None:
    # Prepare: bcrypt (htpasswd, Go's x/crypto) reads only the first 72 bytes of a password
    long_password = "x" * 72 + "tail"
    hashed = bcrypt.hashpw(long_password[:72].encode(), bcrypt.gensalt(rounds=4)).decode()
    config = WebConfig(users={"alice": hashed})
    # Act
    result = config.authorized(basic("alice", long_password))
    # Check
    assert result is True


# --- TLS round trips on loopback -----------------------------------------------------------


def test_should_serve_https_to_a_client_that_trusts_the_ca(tmp_path: Path, pki: Pki) -> None:
    # Prepare
    config = tls_config(tmp_path, pki)
    with serving(config) as server:
        # Act
        response = get(server.port, client_context(pki))
    # Check
    assert response.status == 200


def test_should_refuse_a_client_without_a_certificate_when_one_is_required(
    tmp_path: Path, pki: Pki
) -> None:
    # Prepare
    config = mutual_tls_config(tmp_path, pki)
    # Act: TLS 1.3 may report the refusal only on the client's first read
    with serving(config) as server, pytest.raises((ssl.SSLError, ConnectionError)):
        get(server.port, client_context(pki))
    # Check
    assert any("PEER_DID_NOT_RETURN_A_CERTIFICATE" in error for error in server.errors)


def test_should_serve_a_client_with_a_certificate_from_the_client_ca(
    tmp_path: Path, pki: Pki
) -> None:
    # Prepare
    config = mutual_tls_config(tmp_path, pki)
    with serving(config) as server:
        # Act
        response = get(server.port, client_context(pki, cert=pki.client))
    # Check
    assert response.status == 200


def test_should_refuse_a_client_certificate_from_another_ca(tmp_path: Path, pki: Pki) -> None:
    # Prepare
    config = mutual_tls_config(tmp_path, pki)
    # Act
    with serving(config) as server, pytest.raises((ssl.SSLError, ConnectionError)):
        get(server.port, client_context(pki, cert=pki.stranger))
    # Check
    assert any("CERTIFICATE_VERIFY_FAILED" in error for error in server.errors)


def test_should_refuse_tls12_clients_when_min_version_is_tls13(tmp_path: Path, pki: Pki) -> None:
    # Prepare
    config = tls_config(tmp_path, pki, min_version="TLS13")
    context = client_context(pki)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    # Act
    with serving(config) as server, pytest.raises((ssl.SSLError, ConnectionError)):
        get(server.port, context)
    # Check
    assert any("UNSUPPORTED_PROTOCOL" in error for error in server.errors)


def test_should_ask_for_credentials_over_tls(tmp_path: Path, pki: Pki) -> None:
    # Prepare
    path = write_config(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"basic_auth_users:\n  prometheus: {HASH}\n"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
    )
    config = load_web_config(path)
    with serving(config) as server:
        # Act
        anonymous = get(server.port, client_context(pki))
        known = get(
            server.port, client_context(pki), {"Authorization": basic("prometheus", PASSWORD)}
        )
    # Check
    assert anonymous.status == 401
    assert anonymous.getheader("WWW-Authenticate") == BASIC_CHALLENGE
    assert known.status == 200
    assert known.getheader("X-Content-Type-Options") == "nosniff"


def test_should_keep_serving_while_a_client_stalls_its_handshake(tmp_path: Path, pki: Pki) -> None:
    # Prepare
    config = tls_config(tmp_path, pki)
    with serving(config) as server, socket.create_connection(("127.0.0.1", server.port), timeout=5):
        # Act: the silent connection above never sends a ClientHello
        response = get(server.port, client_context(pki))
    # Check
    assert response.status == 200


def test_should_leave_plain_http_alone_without_tls(tmp_path: Path) -> None:
    # Prepare
    config = load_web_config(write_config(tmp_path, f"basic_auth_users:\n  alice: {HASH}\n"))
    with serving(config) as server:
        # Act
        response = get(server.port, None, {"Authorization": basic("alice", PASSWORD)})
    # Check
    assert config.scheme == "http"
    assert response.status == 200
