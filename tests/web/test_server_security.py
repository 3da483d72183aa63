"""The exporter's listener behind ``--web.config.file`` (issue 5): HTTPS, basic auth, mutual
TLS and the webhook path's own authentication, over real loopback connections to
ExporterServer, then once through the program (``--demo``).

Certificates are throwaway ones from trustme; the password's bcrypt hash has cost 4, so
each check costs about a millisecond.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import trustme

from exporter.codat.webhooks.receiver import WebhookReceiver
from exporter.codat.webhooks.signatures import WebhookVerifier, sign
from exporter.web.basicauth import BASIC_CHALLENGE
from exporter.web.handler import WEBHOOK_PATH
from exporter.web.server import ExporterServer
from exporter.web.webconfig import WebConfig, load_web_config
from tests.codat.webhooks.test_signatures import new_secret
from tests.harness import LISTEN_ANYWHERE, FakeClock, Harness, Program
from tests.web.test_server import HOLDING, hang_up

USER = "prometheus"
PASSWORD = "tr0ub4dor&3-scraper"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@dataclass(frozen=True)
class Pki:
    ca: Path  # what clients trust for the server
    cert: Path
    key: Path
    client_ca: Path  # what the server trusts for client certificates
    client: Path  # a client certificate from client_ca, key and chain in one file


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    pki = Pki(
        ca=folder / "ca.pem",
        cert=folder / "server.pem",
        key=folder / "server.key",
        client_ca=folder / "client-ca.pem",
        client=folder / "client.pem",
    )
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    server_ca.cert_pem.write_to_path(str(pki.ca))
    server.private_key_pem.write_to_path(str(pki.key))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(pki.cert), append=i > 0)
    client_ca.cert_pem.write_to_path(str(pki.client_ca))
    client_ca.issue_cert("scraper@example.com").private_key_and_cert_chain_pem.write_to_path(
        str(pki.client)
    )
    return pki


def web_config_file(folder: Path, pki: Pki, *, users: bool = True, mutual: bool = False) -> Path:
    """A web config file as an operator writes it: TLS, optionally client certs and users."""
    lines = ["tls_server_config:", f"  cert_file: {pki.cert}", f"  key_file: {pki.key}"]
    if mutual:
        lines += [f"  client_ca_file: {pki.client_ca}",
                  "  client_auth_type: RequireAndVerifyClientCert"]  # fmt: skip
    if users:
        lines += ["basic_auth_users:", f"  {USER}: {HASH}"]
    path = folder / "web-config.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def serve(harness: Harness, clock: FakeClock) -> Iterator[Callable[..., ExporterServer]]:
    """``serve(web_config, **kwargs)``: an ExporterServer on a free loopback port over the
    harness's store, polled once so that /metrics and /-/ready have something to show."""
    harness.poll()
    started: list[ExporterServer] = []

    def start(web_config: WebConfig, **kwargs: Any) -> ExporterServer:
        server = ExporterServer(
            "127.0.0.1:0", harness.store, harness.metrics, clock, web_config=web_config, **kwargs
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def get(server: ExporterServer, path: str, pki: Pki, **kwargs: Any) -> requests.Response:
    return requests.get(server.url + path, verify=str(pki.ca), timeout=5, **kwargs)


# --- HTTPS and basic auth ----------------------------------------------------------------


def test_should_serve_metrics_over_https_to_the_right_password(
    tmp_path: Path, pki: Pki, serve: Callable[..., ExporterServer]
) -> None:
    # Prepare
    server = serve(load_web_config(web_config_file(tmp_path, pki)))
    # Act
    response = get(server, "/metrics", pki, auth=(USER, PASSWORD))
    # Check
    assert server.url.startswith("https://127.0.0.1:")
    assert response.status_code == 200
    assert "codat_exporter_company_up{" in response.text


PATHS = ("/metrics", "/", "/-/healthy", "/-/ready", "/nope", "/metrics?x=1", "//metrics")


@pytest.mark.parametrize(
    "auth",
    [
        None,
        (USER, "wrong"),
        (USER, PASSWORD + "x"),
        ("grafana", PASSWORD),
        (USER.upper(), PASSWORD),
    ],
    ids=["no-password", "wrong-password", "longer-password", "unknown-user", "user-case"],
)
def test_should_refuse_every_path_without_the_right_password(
    tmp_path: Path, pki: Pki, serve: Callable[..., ExporterServer], auth: tuple[str, str] | None
) -> None:
    # Prepare
    server = serve(load_web_config(web_config_file(tmp_path, pki)))
    # Act
    responses = {path: get(server, path, pki, auth=auth) for path in PATHS}
    # Check
    assert {path: r.status_code for path, r in responses.items()} == dict.fromkeys(PATHS, 401)
    for response in responses.values():
        assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE
        assert "codat_" not in response.text


@pytest.mark.parametrize(("method", "path"), [("POST", "/metrics"), ("DELETE", "/nope")])
def test_should_refuse_other_methods_without_the_password_before_saying_405_or_404(
    tmp_path: Path, pki: Pki, serve: Callable[..., ExporterServer], method: str, path: str
) -> None:
    # Prepare
    server = serve(load_web_config(web_config_file(tmp_path, pki)))
    # Act
    answer = requests.request(method, server.url + path, verify=str(pki.ca), timeout=5)
    # Check
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == BASIC_CHALLENGE
    assert "Allow" not in answer.headers


def test_should_answer_503_over_https_beyond_max_requests_and_health_at_once(
    tmp_path: Path, pki: Pki, harness: Harness, clock: FakeClock,
    serve: Callable[..., ExporterServer],
) -> None:  # fmt: skip
    # Prepare: the password checked once; a connection that never starts its handshake, and
    # a webhook delivery whose body never comes, which holds the only slot
    receiver = WebhookReceiver(
        WebhookVerifier(new_secret(), clock), clock, harness.metrics.webhooks, harness.poller
    )
    config = load_web_config(web_config_file(tmp_path, pki))
    server = serve(config, max_requests=1, webhooks=receiver)
    address = ("127.0.0.1", int(server.server_address[1]))
    checked = get(server, "/-/healthy", pki, auth=(USER, PASSWORD))
    client_tls = ssl.create_default_context(cafile=str(pki.ca))
    with (
        socket.create_connection(address, timeout=5),
        client_tls.wrap_socket(socket.create_connection(address, timeout=5),
                               server_hostname="127.0.0.1") as holder,
    ):  # fmt: skip
        holder.sendall(HOLDING)
        continued = holder.recv(65536)
        # Act
        beyond = get(server, "/metrics", pki, auth=(USER, PASSWORD))
        health = get(server, "/-/healthy", pki, auth=(USER, PASSWORD))
        anonymous = get(server, "/-/ready", pki)
        hang_up(holder)
    after = get(server, "/metrics", pki, auth=(USER, PASSWORD))
    # Check
    assert checked.status_code == 200
    assert continued.startswith(b"HTTP/1.1 100 ")
    assert beyond.status_code == 503
    assert "codat_" not in beyond.text
    assert health.status_code == 200
    assert anonymous.status_code == 401
    assert after.status_code == 200


def test_should_serve_health_without_auth_only_when_told(
    tmp_path: Path, pki: Pki, serve: Callable[..., ExporterServer]
) -> None:
    # Prepare
    config = load_web_config(web_config_file(tmp_path, pki))
    strict = serve(config)
    probes = serve(config, health_without_auth=True)
    # Act
    by_default = [get(strict, p, pki).status_code for p in ("/-/healthy", "/-/ready")]
    with_flag = [get(probes, p, pki).status_code for p in ("/-/healthy", "/-/ready")]
    still_protected = [get(probes, p, pki).status_code for p in ("/metrics", "/")]
    # Check
    assert by_default == [401, 401]
    assert with_flag == [200, 200]
    assert still_protected == [401, 401]


def test_should_serve_the_landing_page_over_https(
    tmp_path: Path, pki: Pki, serve: Callable[..., ExporterServer]
) -> None:
    # Prepare
    server = serve(load_web_config(web_config_file(tmp_path, pki)))
    # Act
    page = get(server, "/", pki, auth=(USER, PASSWORD))
    # Check
    assert page.status_code == 200
    assert page.url.startswith("https://")
    assert 'href="/metrics"' in page.text
    assert "http://" not in page.text


def test_should_refuse_plain_http_on_the_tls_listener(
    tmp_path: Path, pki: Pki, serve: Callable[..., ExporterServer]
) -> None:
    # Prepare
    server = serve(load_web_config(web_config_file(tmp_path, pki)))
    plain = server.url.replace("https://", "http://")
    # Act
    with pytest.raises(requests.ConnectionError):
        requests.get(plain + "/metrics", auth=(USER, PASSWORD), timeout=5)
    after = get(server, "/metrics", pki, auth=(USER, PASSWORD))
    # Check: the listener survives the garbage handshake
    assert after.status_code == 200


# --- the webhook path: signed, not basic auth ---------------------------------------------


def test_should_take_signed_webhooks_without_basic_auth(
    tmp_path: Path, pki: Pki, harness: Harness, clock: FakeClock,
    serve: Callable[..., ExporterServer],
) -> None:  # fmt: skip
    # Prepare
    secret = new_secret()
    receiver = WebhookReceiver(
        WebhookVerifier(secret, clock), clock, harness.metrics.webhooks, harness.poller
    )
    server = serve(load_web_config(web_config_file(tmp_path, pki)), webhooks=receiver)
    event = {"id": str(uuid.uuid4()), "eventType": "read.completed",
             "payload": {"referenceCompany": {"id": str(uuid.uuid4())}}}  # fmt: skip
    body = json.dumps(event).encode()
    timestamp = int(clock.time())
    signed = {
        "webhook-id": "msg_tls_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, "msg_tls_1", timestamp, body),
    }
    url = server.url + WEBHOOK_PATH
    # Act
    accepted = requests.post(url, data=body, headers=signed, verify=str(pki.ca), timeout=5)
    unsigned = requests.post(url, data=body, verify=str(pki.ca), timeout=5)
    password_only = requests.post(
        url, data=body, auth=(USER, PASSWORD), verify=str(pki.ca), timeout=5
    )
    metrics = get(server, "/metrics", pki, auth=(USER, PASSWORD)).text
    # Check: basic auth neither lets a delivery in nor is asked of one
    assert accepted.status_code == 200
    assert unsigned.status_code == 401
    assert "Basic" not in unsigned.headers.get("WWW-Authenticate", "")
    assert password_only.status_code == 401
    assert (
        'codat_exporter_webhooks_total{event_type="other",result="missing_headers"} 2.0' in metrics
    )
    assert 'codat_exporter_webhooks_total{event_type="read.completed",result="ok"} 1.0' in metrics


# --- mutual TLS ------------------------------------------------------------------------------


def test_should_refuse_the_handshake_of_a_client_without_a_certificate(
    tmp_path: Path, pki: Pki, serve: Callable[..., ExporterServer]
) -> None:
    # Prepare
    server = serve(load_web_config(web_config_file(tmp_path, pki, users=False, mutual=True)))
    # Act: TLS 1.3 may report the refusal only on the client's first read
    with pytest.raises(requests.ConnectionError):
        get(server, "/metrics", pki)
    with_cert = get(server, "/metrics", pki, cert=str(pki.client))
    # Check
    assert with_cert.status_code == 200


def test_should_want_both_certificate_and_password_when_both_are_configured(
    tmp_path: Path, pki: Pki, serve: Callable[..., ExporterServer]
) -> None:
    # Prepare
    server = serve(load_web_config(web_config_file(tmp_path, pki, users=True, mutual=True)))
    # Act
    cert_only = get(server, "/metrics", pki, cert=str(pki.client))
    both = get(server, "/metrics", pki, cert=str(pki.client), auth=(USER, PASSWORD))
    with pytest.raises(requests.ConnectionError):
        get(server, "/metrics", pki, auth=(USER, PASSWORD))
    # Check
    assert cert_only.status_code == 401
    assert both.status_code == 200


# --- through the program ----------------------------------------------------------------------


def test_should_run_the_demo_over_https_with_basic_auth_and_stop_on_sigterm(
    tmp_path: Path, pki: Pki
) -> None:
    # Prepare
    config = web_config_file(tmp_path, pki)
    ca = str(pki.ca)  # per request: REQUESTS_CA_BUNDLE would override a Session's verify

    def ready() -> bool:
        try:
            return requests.get(url + "/-/ready", auth=(USER, PASSWORD), verify=ca, timeout=1).ok
        except requests.ConnectionError:
            return False

    with Program("--demo", "--web.listen-address", LISTEN_ANYWHERE,
                 "--web.config.file", str(config)) as program:  # fmt: skip
        url = program.url()
        # Act
        deadline = time.monotonic() + 20
        is_ready = False
        while not is_ready and time.monotonic() < deadline:
            is_ready = ready()
            if not is_ready:
                time.sleep(0.1)
        anonymous = requests.get(url + "/metrics", verify=ca, timeout=5)
        scraped = requests.get(url + "/metrics", auth=(USER, PASSWORD), verify=ca, timeout=5)
        program.process.send_signal(signal.SIGTERM)
        code = program.process.wait(timeout=15)
    stderr = program.stderr
    # Check
    assert url.startswith("https://127.0.0.1:")
    assert is_ready, stderr
    assert anonymous.status_code == 401
    assert scraped.status_code == 200
    assert "codat_exporter_company_up{" in scraped.text
    assert code == 0
    assert (
        f"serving metrics at {url}/metrics (TLS (TLS12+), no client certificates, "
        "basic auth for 1 user)" in stderr
    )
    assert "Traceback" not in stderr
