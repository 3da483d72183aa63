"""No secret leaks out (issue 5): "A test runs every failure path with a known API key,
webhook secret and password, and checks that none of them (nor the base64 of the key)
appears in logs, /metrics, the landing page or any error message."

Each secret is distinctive (the raw ones all contain ``LEAKCANARY``), and every derived form
an exporter could plausibly print is looked for too: the key's base64 (the Basic
credentials sent to Codat), the webhook key in base64, raw and hex, the basic-auth
credentials' base64, the bcrypt hash. In-process parts are checked through caplog at DEBUG;
the program through its stdout and stderr with ``--log.level debug``.
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests

from exporter.codat.client import CodatClient
from exporter.codat.webhooks.receiver import WebhookReceiver
from exporter.codat.webhooks.signatures import WebhookVerifier, sign
from exporter.config.load import parse_config
from exporter.core.contract import CONNECTIONS, DATA_STATUS
from exporter.exposition.instruments import ExporterMetrics
from exporter.simulator.faults import Fault
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from exporter.web.handler import WEBHOOK_PATH
from exporter.web.server import ExporterServer
from exporter.web.webconfig import load_web_config
from tests.harness import LISTEN_ANYWHERE, FakeClock, Harness, Program, make_config

CANARY = "LEAKCANARY"
API_KEY = f"{CANARY}-codat-api-key-8d2f61b0c7e4"
WEBHOOK_KEY = f"{CANARY}-webhook-hmac-key-41e9a7".encode()
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_KEY).decode()
USER = "prometheus"
PASSWORD = f"{CANARY}-basic-auth-password-c35b"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
OTHER_KEY = "key-the-simulator-expects-instead"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SECRETS = {
    "the canary in every raw secret": CANARY,
    "API key": API_KEY,
    "API key in base64 (Codat's Basic credentials)": b64(API_KEY),
    "API key with a colon in base64": b64(API_KEY + ":"),
    "webhook secret": WEBHOOK_SECRET,
    "webhook secret without its prefix": WEBHOOK_SECRET.removeprefix("whsec_"),
    "webhook key in hex": WEBHOOK_KEY.hex(),
    "password": PASSWORD,
    "basic-auth credentials in base64": b64(f"{USER}:{PASSWORD}"),
    "bcrypt hash (salt and digest)": HASH[7:40],
}


def leaks(*texts: str, extra: dict[str, str] | None = None) -> list[str]:
    """The names of the secrets found in any of ``texts``."""
    secrets = {**SECRETS, **(extra or {})}
    return sorted({name for name, value in secrets.items() for text in texts if value in text})


def shown(responses: Iterable[requests.Response]) -> str:
    """Everything a client sees of some responses: status line, headers and body."""
    return "\n".join(f"{r.status_code} {r.reason} {dict(r.headers)}\n{r.text}" for r in responses)


def test_should_hold_secrets_that_the_checks_would_find() -> None:
    # Check: the canaries are distinct, and the check finds each of them
    assert len(set(SECRETS.values())) == len(SECRETS)
    assert all(leaks(value) for value in SECRETS.values())
    assert leaks("nothing to see") == []


# --- in-process parts ----------------------------------------------------------------------


def web_config_file(folder: Path) -> Path:
    path = folder / "web-config.yml"
    path.write_text(f"basic_auth_users:\n  {USER}: {HASH}\n")
    return path


def test_should_not_show_secrets_in_reprs(tmp_path: Path, clock: FakeClock) -> None:
    # Prepare
    config = parse_config({
        "codat": {"api_key": API_KEY},
        "companies": {"ids": [str(uuid.uuid4())]},
        "webhooks": {"enabled": True, "secret": WEBHOOK_SECRET},
    })  # fmt: skip
    client = CodatClient(config.codat, ExporterMetrics(), clock)
    web_config = load_web_config(web_config_file(tmp_path))
    verifier = WebhookVerifier(WEBHOOK_SECRET, clock)
    # Act
    texts = [
        repr(config), str(config), repr(config.codat), repr(config.webhooks), config.summary(),
        repr(client), str(client), repr(web_config), str(web_config), web_config.summary(),
        repr(verifier), str(verifier),
    ]  # fmt: skip
    client.close()
    # Check
    assert leaks(*texts) == []


@pytest.fixture
def simulator(fleet: Fleet, request: pytest.FixtureRequest) -> Iterator[SimulatedCodat]:
    """A simulated Codat expecting ``request.param`` as the API key (default: API_KEY)."""
    server = SimulatedCodat(fleet, getattr(request, "param", API_KEY)).start()
    yield server
    server.stop()


@pytest.fixture
def secret_harness(simulator: SimulatedCodat, clock: FakeClock) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**sections: Any) -> Harness:
        codat = {"api_key": API_KEY, **sections.pop("codat", {})}
        webhooks = {"enabled": True, "secret": WEBHOOK_SECRET}
        config = make_config(simulator, codat=codat, webhooks=webhooks, **sections)
        harness = Harness(config, clock, simulator)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def pages(harness: Harness) -> str:
    return shown([harness.get("/metrics"), harness.get("/"), harness.get("/nope")])


FAULTS = [
    Fault("status", status=500),
    Fault("status", status=503, retry_after="1"),
    Fault("status", status=429, retry_after="2"),
    Fault("html", status=502),
    Fault("malformed"),
    Fault("wrong_shape"),
    Fault("truncated"),
    Fault("latency", seconds=0.4, endpoint=DATA_STATUS),
]


def test_should_not_log_secrets_through_every_failure_of_codat(
    secret_harness: Callable[..., Harness], fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a fault per company, a connection reset, and a listed company Codat does not
    # know (failed as not found)
    companies = sorted(fleet.companies)
    for company, fault in zip(companies, FAULTS, strict=True):
        fleet.inject(company, fault)
    reset = fleet.add()
    fleet.inject(reset, Fault("reset", endpoint=CONNECTIONS))
    gone = str(uuid.uuid4())
    harness = secret_harness(
        codat={"timeout": "200ms"}, companies={"ids": [*companies, reset, gone]}
    )
    caplog.set_level(logging.DEBUG)
    # Act: twice, for the "still failing" path
    first = harness.poll()
    second = harness.poll()
    seen = pages(harness)
    # Check: every company failed, and the failures were logged
    assert (first.succeeded, first.failed, first.gone) == (0, len(companies) + 2, 0)
    assert second.succeeded == 0
    assert "poll failed" in caplog.text
    assert "poll still failing" in caplog.text
    assert "connection reset" in caplog.text
    assert "not found in Codat (404)" in caplog.text
    assert "codat_exporter_company_up{" in seen
    assert leaks(caplog.text, seen) == []


@pytest.mark.parametrize("simulator", [OTHER_KEY], indirect=True)
def test_should_not_log_the_key_codat_rejects(
    secret_harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    harness = secret_harness()
    caplog.set_level(logging.DEBUG)
    # Act
    harness.poll()
    harness.poll()
    seen = pages(harness)
    # Check
    assert "Codat rejected the API key" in caplog.text
    assert 'reason="api_key_rejected"' in seen
    assert leaks(caplog.text, seen) == []


def test_should_not_echo_secrets_when_refusing_webhooks(
    secret_harness: Callable[..., Harness], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    harness = secret_harness()
    harness.poll()
    receiver = WebhookReceiver(
        WebhookVerifier(WEBHOOK_SECRET, clock), clock, harness.metrics.webhooks, harness.poller,
        debounce=0.1,
    )  # fmt: skip
    server = ExporterServer("127.0.0.1:0", harness.store, harness.metrics, clock,
                            webhooks=receiver, webhook_max_bytes=2048)  # fmt: skip
    server.start()
    company = sorted(harness.fleet.companies)[0]
    body = json.dumps({"id": str(uuid.uuid4()), "eventType": "read.completed",
                       "payload": {"referenceCompany": {"id": company}}}).encode()  # fmt: skip
    now = int(clock.time())
    good = sign(WEBHOOK_SECRET, "msg_1", now, body)
    other = "whsec_" + b64("some other key")

    def post(headers: dict[str, str], data: bytes = body) -> requests.Response:
        return requests.post(server.url + WEBHOOK_PATH, data=data, headers=headers, timeout=5)

    def signed(msg_id: str, timestamp: int, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, msg_id, timestamp, body)}  # fmt: skip

    caplog.set_level(logging.DEBUG)
    try:
        # Act
        answers = [
            post({}),
            post(signed("msg_1", now, other)),
            post({**signed("msg_1", now), "webhook-signature": good[:-8] + "AAAAAAA="}),
            post(signed("msg_1", now - 301)),
            post(signed("msg_1", now + 301)),
            post({**signed("msg_1", now), "webhook-timestamp": "soon"}),
            post(signed("msg_1", now)),
            post(signed("msg_1", now)),
            post(signed("msg_2", now), b"x" * 4096),
        ]
        clock.advance(1)
        receiver.tick()
        seen = pages(harness)
    finally:
        server.stop()
    # Check: the signature the exporter expects is derived from the secret; never shown either
    assert [a.status_code for a in answers] == [401] * 6 + [200, 401, 413]
    assert leaks(caplog.text, seen, shown(answers), extra={"expected signature": good[3:]}) == []


def test_should_not_echo_passwords_when_refusing_basic_auth(
    tmp_path: Path, secret_harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    harness = secret_harness()
    harness.poll()
    server = ExporterServer("127.0.0.1:0", harness.store, harness.metrics, harness.clock,
                            web_config=load_web_config(web_config_file(tmp_path)))  # fmt: skip
    server.start()
    wrong = [(USER, PASSWORD[:-1]), (USER, PASSWORD + "x"), ("grafana", PASSWORD),
             (USER, "guess"), (PASSWORD, USER)]  # fmt: skip
    caplog.set_level(logging.DEBUG)
    try:
        # Act
        refused = [
            requests.get(server.url + path, auth=auth, timeout=5)
            for auth in wrong
            for path in ("/metrics", "/", "/-/healthy")
        ]
        refused.append(requests.get(server.url + "/metrics", timeout=5))
        bearer = {"Authorization": f"Bearer {PASSWORD}"}
        refused.append(requests.get(server.url + "/metrics", headers=bearer, timeout=5))
        allowed = [requests.get(server.url + p, auth=(USER, PASSWORD), timeout=5)
                   for p in ("/metrics", "/", "/-/ready")]  # fmt: skip
    finally:
        server.stop()
    # Check
    assert {r.status_code for r in refused} == {401}
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert leaks(caplog.text, shown(refused), shown(allowed)) == []


# --- the program ---------------------------------------------------------------------------


def program(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(process: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.wait(), stdout, stderr


def config_text(codat_url: str, companies: Iterable[str], interval: str = "2s") -> str:
    """A config with every secret; a short interval bounds --once's retries."""
    options = {"base_url": f"'{codat_url}'", "api_key": f"'{API_KEY}'", "timeout": "300ms",
               "max_concurrency": "8", "max_requests_per_minute": "100000"}  # fmt: skip
    return (
        "codat: {" + ", ".join(f"{k}: {v}" for k, v in options.items()) + "}\n"
        f"poll: {{interval: {interval}}}\n"
        f"companies: {{ids: [{', '.join(companies)}]}}\n"
        f"webhooks: {{enabled: true, secret: '{WEBHOOK_SECRET}', debounce: 100ms}}\n"
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


COMPANY = "0498e921-9b53-4396-a412-4f2f5983b0a2"
GOOD_CODAT = f"codat: {{api_key: '{API_KEY}'}}\ncompanies: {{ids: [{COMPANY}]}}\n"
CONFIG_ERRORS: dict[str, tuple[str, str, str]] = {
    # name: (config file, web config file, start of the error after the program's name)
    "webhook secret without its prefix": (
        GOOD_CODAT + "webhooks: {enabled: true, secret: '"
        + WEBHOOK_SECRET.removeprefix("whsec_") + "'}\n",
        "", "webhooks.secret: must start with whsec_",
    ),
    "webhook secret that is not base64": (
        GOOD_CODAT + f"webhooks: {{enabled: true, secret: '{WEBHOOK_SECRET}*{CANARY}'}}\n",
        "", "webhooks.secret: the part after whsec_ is not valid base64",
    ),
    "webhook secret next to a bad duration": (
        GOOD_CODAT + f"webhooks: {{enabled: true, secret: '{WEBHOOK_SECRET}', debounce: 5 s}}\n",
        "", "webhooks.debounce: '5 s' is not a duration",
    ),
    "API key next to a bad duration": (
        f"codat: {{api_key: '{API_KEY}', timeout: 30 seconds}}\n"
        f"companies: {{ids: [{COMPANY}]}}\n",
        "", "codat.timeout: '30 seconds' is not a duration",
    ),
    "API key where the codat section belongs": (
        f"codat: {API_KEY}\ncompanies: {{ids: [{COMPANY}]}}\n",
        "", "codat: must be a mapping, not a string",
    ),
    "API key on a line YAML cannot read": (
        f"codat:\n  api_key: '{API_KEY}\ncompanies: {{ids: [{COMPANY}]}}\n",
        "", "",  # the file's path comes first; checked for "not valid YAML" below
    ),
    "API key and key file both set": (
        f"codat: {{api_key: '{API_KEY}', api_key_file: /nonexistent}}\n"
        f"companies: {{ids: [{COMPANY}]}}\n",
        "", "codat.api_key: set exactly one of codat.api_key and codat.api_key_file",
    ),
    "password pasted instead of its hash": (
        GOOD_CODAT, f"basic_auth_users:\n  {USER}: {PASSWORD}\n",
        f"basic_auth_users.{USER}: not a bcrypt hash",
    ),
    "hash cut short": (
        GOOD_CODAT, f"basic_auth_users:\n  {USER}: '{HASH[:-1]}'\n",
        f"basic_auth_users.{USER}: not a bcrypt hash",
    ),
    "htpasswd line pasted as a user name": (
        GOOD_CODAT, f"basic_auth_users:\n  {USER}:{HASH}:\n",
        "basic_auth_users: user name 1 contains ':'",
    ),
    "credentials pasted as a user name": (
        GOOD_CODAT, f"basic_auth_users:\n  '{USER}:{PASSWORD}': '{HASH}'\n",
        "basic_auth_users: user name 1 contains ':'",
    ),
}  # fmt: skip


def test_should_not_echo_a_secret_in_any_config_error(tmp_path: Path) -> None:
    # Prepare
    runs: dict[str, subprocess.Popen[str]] = {}
    for index, (name, (config, web_config, _)) in enumerate(CONFIG_ERRORS.items()):
        args = ["--check-config", "--config.file", str(write(tmp_path / f"c{index}.yml", config))]
        if web_config:
            args += ["--web.config.file", str(write(tmp_path / f"w{index}.yml", web_config))]
        runs[name] = program(*args)
    # Act
    results = {name: finish(process) for name, process in runs.items()}
    # Check
    for name, (code, stdout, stderr) in results.items():
        expected = CONFIG_ERRORS[name][2]
        assert code == 2, f"{name}: {stderr}"
        assert stdout == ""
        assert stderr.count("\n") == 1, f"{name}: {stderr}"
        assert stderr.startswith(f"codat-freshness-exporter: {expected}"), f"{name}: {stderr}"
        assert leaks(stderr) == [], f"{name}: {stderr}"
    assert "not valid YAML" in results["API key on a line YAML cannot read"][2]


def test_should_not_show_secrets_when_checking_a_good_config(tmp_path: Path) -> None:
    # Prepare
    config = write(tmp_path / "config.yml", config_text("http://127.0.0.1:9", [COMPANY]))
    # Act
    code, stdout, stderr = finish(program(
        "--check-config", "--config.file", str(config),
        "--web.config.file", str(web_config_file(tmp_path)), "--log.level", "debug",
    ))  # fmt: skip
    # Check
    assert code == 0, stderr
    assert "configuration OK" in stdout
    assert leaks(stdout, stderr) == []


def test_should_not_show_secrets_in_once_output_through_failures(
    tmp_path: Path, fleet: Fleet, clock: FakeClock
) -> None:
    # Prepare: one simulator with a fault per company, one that rejects the key
    faulty = SimulatedCodat(fleet, API_KEY).start()
    rejecting = SimulatedCodat(fleet, OTHER_KEY).start()
    companies = sorted(fleet.companies)
    for company, fault in zip(companies, FAULTS, strict=True):
        fleet.inject(company, fault)
    try:
        runs = [
            program("--once", "--log.level", "debug", "--config.file",
                    str(write(tmp_path / f"{name}.yml", config_text(simulator.url, companies))))
            for name, simulator in (("faulty", faulty), ("rejecting", rejecting))
        ]  # fmt: skip
        # Act
        results = [finish(process) for process in runs]
    finally:
        faulty.stop()
        rejecting.stop()
    # Check
    for code, stdout, stderr in results:
        assert code == 1, stderr
        assert "codat_exporter_company_up{" in stdout
        assert leaks(stdout, stderr) == []
    assert "poll failed" in results[0][2] or "companies failed (" in results[0][2]
    assert "Codat rejected the API key" in results[1][2]


@pytest.mark.parametrize("simulator", [OTHER_KEY], indirect=True)
def test_should_not_show_secrets_while_the_program_serves_and_refuses(
    tmp_path: Path, simulator: SimulatedCodat
) -> None:
    # Prepare: Codat rejects the key; webhooks on; basic auth on
    companies = sorted(simulator.fleet.companies)
    config = write(tmp_path / "config.yml", config_text(simulator.url, companies, "1h"))
    body = json.dumps({"id": str(uuid.uuid4()), "eventType": "read.completed",
                       "payload": {"referenceCompany": {"id": companies[0]}}}).encode()  # fmt: skip

    def signed(msg_id: str, offset: int = 0, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
        timestamp = int(time.time()) + offset
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, msg_id, timestamp, body)}  # fmt: skip

    def status(path: str, auth: tuple[str, str] | None = (USER, PASSWORD)) -> int:
        try:
            return requests.get(url + path, auth=auth, timeout=1).status_code
        except requests.ConnectionError:
            return 0

    def polls() -> int:
        """Requests about the company: its name's, as Codat rejects it before dataStatus."""
        return sum(1 for _, _, c, _ in list(simulator.log) if c == companies[0])

    seen: list[requests.Response] = []
    with Program(
        "--config.file", str(config), "--web.config.file", str(web_config_file(tmp_path)),
        "--web.listen-address", LISTEN_ANYWHERE, "--log.level", "debug",
    ) as running:  # fmt: skip
        url = running.url()
        deadline = time.monotonic() + 20
        while status("/-/ready") != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = polls()
        # Act
        for auth in [(USER, PASSWORD[:-1]), ("grafana", PASSWORD), (USER, "guess")]:
            seen += [requests.get(url + p, auth=auth, timeout=5) for p in ("/metrics", "/")]
        hook = url + WEBHOOK_PATH
        seen += [
            requests.post(hook, data=body, headers=h, timeout=5)
            for h in ({}, signed("m1", secret="whsec_" + b64("other")), signed("m1", -301),
                      signed("m2"), signed("m2"))
        ]  # fmt: skip
        repolled = False
        while not repolled and time.monotonic() < deadline:
            repolled = polls() > before
            time.sleep(0.05)
        seen += [requests.get(url + p, auth=(USER, PASSWORD), timeout=5) for p in ("/metrics", "/")]
        running.process.send_signal(signal.SIGTERM)
        code = running.process.wait(timeout=15)
    stdout, stderr = running.stdout, running.stderr
    # Check
    assert [r.status_code for r in seen] == [401] * 6 + [401, 401, 401, 200, 401] + [200, 200]
    assert repolled, stderr
    assert code == 0, stderr
    assert "Codat rejected the API key" in stderr
    assert "DEBUG" in stderr
    assert leaks(stdout, stderr, shown(seen)) == []
