"""Codat's webhooks end to end (issue 5): signed deliveries over real loopback HTTP to the
exporter's listener, acted on by the receiver against the simulated Codat, and seen on
/metrics. Once more through the program itself, with the system clock and its scheduler.

A delivery is only queued when it arrives; ``receiver.tick()`` (every second, on the
scheduler, in the program) does the work. Here the test calls it, after moving the fake
clock past the debounce, so "nothing happens before the debounce" is checked without
waiting for it.
"""

from __future__ import annotations

import itertools
import json
import logging
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.codat.webhooks.receiver import WebhookReceiver
from exporter.codat.webhooks.signatures import WebhookVerifier, sign
from exporter.core.contract import CONNECTIONS, DATA_STATUS
from exporter.simulator.fleet import Fleet
from exporter.simulator.server import SimulatedCodat
from exporter.web.handler import WEBHOOK_PATH
from exporter.web.server import ExporterServer
from tests.codat.webhooks.test_signatures import new_secret
from tests.contract import Contract, load_schemas
from tests.harness import (
    API_KEY,
    LISTEN_ANYWHERE,
    START,
    FakeClock,
    Harness,
    Program,
    Scrape,
    parse_exposition,
)

DEBOUNCE = 5.0
MAX_BODY_BYTES = 4096
WEBHOOKS_TOTAL = "codat_exporter_webhooks_total"
TS = "codat_data_type_last_successful_sync_timestamp_seconds"
STATUS = "codat_data_type_status"
LAST_SYNC = "codat_data_type_last_successful_sync_timestamp_seconds"
CONNECTION_STATUS = "codat_connection_status"


# --- Codat's payloads, shaped as the examples in Codat-Platform.yaml ("webhooks") -----------


def read_completed(company_id: str) -> dict[str, Any]:
    """ReadCompletedWebhook, as in the spec's "Read completed without issues" example."""
    return {
        "id": str(uuid.uuid4()),
        "eventType": "read.completed",
        "generatedDate": "2026-11-23T12:00:00.000Z",
        "payload": {
            "referenceCompany": {"id": company_id, "name": "Toft stores"},
            "modifiedFromDate": "2026-11-23T12:00:00.000Z",
            "dataTypes": [
                {
                    "connectionId": "2e9d2c44-f675-40ba-8049-353bfcb5e171",
                    "dataType": "invoices",
                    "recordsModified": True,
                    "status": "Complete",
                    "issues": [],
                }
            ],
        },
    }


def connection_event(
    company_id: str, event_type: str = "connection.disconnected"
) -> dict[str, Any]:
    """ConnectionWebhook, as in the spec's connection.disconnected example."""
    return {
        "id": str(uuid.uuid4()),
        "eventType": event_type,
        "generatedDate": "2026-11-23T12:00:00.000Z",
        "payload": {
            "referenceCompany": {"id": company_id, "name": "Bank of Dave"},
            "connection": {
                "id": "ee2eb431-c0fa-4dc9-93fa-d29781c12bcd",
                "integrationId": "fd321cb6-7963-4506-b873-e99593a45e30",
                "integrationKey": "gbol",
                "sourceId": "56e6575a-3f1b-4bc6-9b9b-e4e5b4b4a0b5",
                "sourceType": "Accounting",
                "platformName": "Xero",
                "linkUrl": "https://link-api.codat.io/companies/x/connections/y/start",
                "status": "Deauthorized",
                "created": "2022-10-27T09:53:29Z",
            },
        },
    }


def company_deleted(company_id: str) -> dict[str, Any]:
    """CompanyWebhook: the payload is the company itself, so its id is payload.id."""
    return {
        "id": str(uuid.uuid4()),
        "eventType": "company.deleted",
        "generatedDate": "2026-11-23T12:00:00.000Z",
        "payload": {
            "id": company_id,
            "name": "Bank of Dave",
            "redirect": f"https://link.codat.io/company/{company_id}",
        },
    }


# --- the exporter's parts with a webhook listener -------------------------------------------


@dataclass
class Webhooks:
    """A Harness plus a WebhookReceiver and a listener that takes Codat's deliveries."""

    harness: Harness
    clock: FakeClock
    secret: str
    receiver: WebhookReceiver
    server: ExporterServer
    _ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def codat(self) -> SimulatedCodat:
        return self.harness.codat

    def post(
        self,
        body: bytes,
        headers: dict[str, str] | None = None,
        server: ExporterServer | None = None,
    ) -> requests.Response:
        url = (server or self.server).url + WEBHOOK_PATH
        return requests.post(url, data=body, headers=headers or {}, timeout=5)

    def signed(
        self, body: bytes, *, msg_id: str = "", offset: int = 0, secret: str = "",
        prefix: str = "svix-",
    ) -> dict[str, str]:  # fmt: skip
        """The three headers Svix sends (``prefix`` "webhook-": its unbranded names);
        ``offset`` moves the timestamp from now."""
        msg_id = msg_id or f"msg_{next(self._ids)}"
        timestamp = int(self.clock.time()) + offset
        return {
            f"{prefix}id": msg_id,
            f"{prefix}timestamp": str(timestamp),
            f"{prefix}signature": sign(secret or self.secret, msg_id, timestamp, body),
            "Content-Type": "application/json",
        }

    def deliver(
        self, event: dict[str, Any], server: ExporterServer | None = None, prefix: str = "svix-"
    ) -> requests.Response:
        body = json.dumps(event).encode()
        return self.post(body, self.signed(body, prefix=prefix), server)

    def requests_for(self, company_id: str, route: str = DATA_STATUS) -> int:
        return sum(1 for _, r, c, _ in list(self.codat.log) if r == route and c == company_id)

    def data_status_requests(self) -> int:
        return self.codat.requests.get(DATA_STATUS, 0)

    def scrape(self) -> Scrape:
        response = requests.get(self.server.url + "/metrics", timeout=5)
        assert response.status_code == 200
        return Scrape(parse_exposition(response.text), response.text)

    def counted(self, event_type: str, result: str) -> float:
        found = self.scrape().find(WEBHOOKS_TOTAL, event_type=event_type, result=result)
        return sum(s.value for s in found)

    def listener(self, **kwargs: Any) -> ExporterServer:
        """Another listener on the same parts, e.g. ``serve_metrics=False``; caller stops it."""
        return listen(self.harness, self.receiver, **kwargs)


def listen(harness: Harness, receiver: WebhookReceiver, **kwargs: Any) -> ExporterServer:
    """A started listener over the harness's parts that takes webhooks, as app.run wires it."""
    server = ExporterServer(
        "127.0.0.1:0", harness.store, harness.metrics, harness.clock,
        webhooks=receiver, webhook_max_bytes=MAX_BODY_BYTES, **kwargs,
    )  # fmt: skip
    server.start()
    return server


@pytest.fixture
def make_app(
    make_harness: Callable[..., Harness], clock: FakeClock
) -> Iterator[Callable[..., Webhooks]]:
    """``make_app(companies={...})``: the exporter's parts with a webhook listener;
    ``sections`` as for ``make_harness``."""
    servers: list[ExporterServer] = []

    def make(**sections: Any) -> Webhooks:
        harness = make_harness(**sections)
        secret = new_secret()
        verifier = WebhookVerifier(secret, clock)
        receiver = WebhookReceiver(
            verifier, clock, harness.metrics.webhooks, harness.poller, debounce=DEBOUNCE
        )
        servers.append(listen(harness, receiver))
        return Webhooks(harness, clock, secret, receiver, servers[-1])

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def app(make_app: Callable[..., Webhooks]) -> Webhooks:
    return make_app()


@pytest.fixture
def linked(app: Webhooks) -> list[str]:
    """Companies whose Xero connection starts Linked (all but two of the simulator's profiles)."""
    companies = app.harness.fleet.companies.values()
    return sorted(c.id for c in companies if c.profile not in ("auth_error", "first_failed"))


# --- the payloads are Codat's ------------------------------------------------------------


def test_should_use_payloads_that_match_codats_webhook_schemas() -> None:
    # Prepare
    contract = Contract(load_schemas())
    company = str(uuid.uuid4())
    # Act
    errors = {
        "ReadCompletedWebhook": contract.errors("ReadCompletedWebhook", read_completed(company)),
        "ConnectionWebhook": contract.errors("ConnectionWebhook", connection_event(company)),
    }
    # Check
    assert errors == {"ReadCompletedWebhook": [], "ConnectionWebhook": []}


# --- acting on verified deliveries -----------------------------------------------------------


def test_should_answer_at_once_and_repoll_a_burst_once_after_the_debounce(
    app: Webhooks, clock: FakeClock, linked: list[str]
) -> None:
    # Prepare: a new sync lands in Codat after the first poll
    company = linked[0]
    app.harness.poll()
    synced_at = START + 2
    app.harness.fleet.override(company, {
        "invoices": {"dataType": "invoices", "currentStatus": "Complete",
                     "lastSuccessfulSync": "2026-11-23T12:00:02.000Z"},
    })  # fmt: skip
    before = app.requests_for(company)
    total_before = app.data_status_requests()
    # Act: Codat sends one read.completed per product read, so a burst
    answers: list[tuple[int, float]] = []
    for _ in range(5):
        started = time.monotonic()
        status = app.deliver(read_completed(company)).status_code
        answers.append((status, time.monotonic() - started))
    after_deliveries = app.requests_for(company)
    scrape_before_tick = app.scrape()
    app.receiver.tick()
    before_debounce = app.requests_for(company)
    clock.advance(DEBOUNCE)
    app.receiver.tick()
    app.receiver.tick()
    scrape = app.scrape()
    # Check
    assert [status for status, _ in answers] == [200] * 5
    assert max(seconds for _, seconds in answers) < 1.0
    assert after_deliveries == before_debounce == before
    assert scrape_before_tick.value(LAST_SYNC, company_id=company, data_type="invoices") != (
        synced_at
    )
    assert app.requests_for(company) == before + 1
    assert app.data_status_requests() == total_before + 1
    assert scrape.value(LAST_SYNC, company_id=company, data_type="invoices") == synced_at
    assert scrape.value(STATUS, company_id=company, data_type="invoices", status="Complete") == 1
    assert {s.labels["data_type"] for s in scrape.find(STATUS, company_id=company)} == {"invoices"}
    assert scrape.value(WEBHOOKS_TOTAL, event_type="read.completed", result="ok") == 5


@pytest.mark.parametrize(("prefix", "other"), [("svix-", "webhook-"), ("webhook-", "svix-")])
def test_should_take_deliveries_under_either_of_svixs_header_names(
    app: Webhooks, clock: FakeClock, linked: list[str], prefix: str, other: str
) -> None:
    # Prepare: Svix sends svix-* headers, or webhook-* ones when white-labelled
    company = linked[0]
    app.harness.poll()
    body = json.dumps(read_completed(company)).encode()
    headers = app.signed(body, prefix=prefix)
    renamed = {k.replace(prefix, other): v for k, v in headers.items()}
    forged = app.signed(body, prefix=prefix, secret=new_secret())
    before = app.requests_for(company)
    # Act: the delivery, its replay under the other names, and a forgery
    answers = [app.post(body, h).status_code for h in (headers, renamed, forged)]
    clock.advance(DEBOUNCE)
    app.receiver.tick()
    # Check
    assert answers == [200, 401, 401]
    assert app.requests_for(company) == before + 1
    assert app.counted("read.completed", "ok") == 1
    assert app.counted("other", "replayed") == 1
    assert app.counted("other", "bad_signature") == 1


def test_should_take_a_delivery_whose_valid_signature_is_not_the_last_of_several(
    app: Webhooks, clock: FakeClock, linked: list[str]
) -> None:
    # Prepare: while Codat rotates the secret it signs with both; ours comes first here
    company = linked[0]
    app.harness.poll()
    body = json.dumps(read_completed(company)).encode()
    headers = app.signed(body)
    msg_id, timestamp = headers["svix-id"], int(headers["svix-timestamp"])
    retired = sign(new_secret(), msg_id, timestamp, body)
    headers["svix-signature"] = f"{headers['svix-signature']} {retired}"
    before = app.requests_for(company)
    # Act
    answer = app.post(body, headers)
    clock.advance(DEBOUNCE)
    app.receiver.tick()
    # Check
    assert answer.status_code == 200
    assert app.counted("read.completed", "ok") == 1
    assert app.requests_for(company) == before + 1


def xero_status(scrape: Scrape, company_id: str) -> list[str]:
    """The status label of each of the company's Xero connections on /metrics."""
    found = scrape.find(CONNECTION_STATUS, company_id=company_id, platform="Xero")
    return [s.labels["status"] for s in found if s.value == 1]


def test_should_refresh_connections_on_a_connection_event_before_their_interval(
    app: Webhooks, clock: FakeClock, linked: list[str]
) -> None:
    # Prepare: both companies' connections are deauthorized; Codat tells about one
    company, control = linked[0], linked[1]
    app.harness.poll()
    before = app.scrape()
    for company_id in (company, control):
        app.harness.fleet.companies[company_id].connection_status = "Deauthorized"
    fetched_before = app.requests_for(company, CONNECTIONS)
    # Act
    answer = app.deliver(connection_event(company))
    clock.advance(DEBOUNCE)
    app.receiver.tick()
    app.harness.poll()  # a full cycle: connections are not due for 30 minutes
    scrape = app.scrape()
    # Check
    assert answer.status_code == 200
    assert [xero_status(before, c) for c in (company, control)] == [["Linked"], ["Linked"]]
    assert xero_status(scrape, company) == ["Deauthorized"]
    assert xero_status(scrape, control) == ["Linked"]
    assert app.requests_for(company, CONNECTIONS) == fetched_before + 1
    assert scrape.value(WEBHOOKS_TOTAL, event_type="connection.disconnected", result="ok") == 1


def test_should_read_connections_and_data_status_again_on_a_connection_event(
    app: Webhooks, clock: FakeClock, linked: list[str]
) -> None:
    # Prepare: nothing is due: the last cycle read everything a moment ago
    company = linked[0]
    app.harness.poll()
    routes = (CONNECTIONS, DATA_STATUS)
    before = [app.requests_for(company, route) for route in routes]
    # Act
    answer = app.deliver(connection_event(company, "connection.connected"))
    clock.advance(DEBOUNCE)
    app.receiver.tick()
    # Check: docs/operations.md's webhook table says both
    assert answer.status_code == 200
    assert [app.requests_for(company, route) for route in routes] == [n + 1 for n in before]


def test_should_drop_a_deleted_company_that_discovery_found_from_metrics_on_the_next_tick(
    make_app: Callable[..., Webhooks], fleet: Fleet
) -> None:
    # Prepare
    app = make_app(companies={"ids": [], "discover": True})
    app.harness.poll()
    monitored = app.scrape().companies()
    company = sorted(monitored)[0]
    app.harness.fleet.remove(company)
    requests_before = sum(app.codat.requests.values())
    # Act
    answer = app.deliver(company_deleted(company))
    app.receiver.tick()
    scrape = app.scrape()
    # Check
    assert answer.status_code == 200
    assert monitored == set(fleet.companies) | {company}
    assert scrape.companies() == monitored - {company}
    assert company not in scrape.text
    assert scrape.value("codat_exporter_companies") == len(monitored) - 1
    assert scrape.value(WEBHOOKS_TOTAL, event_type="company.deleted", result="ok") == 1
    assert sum(app.codat.requests.values()) == requests_before, "dropped without a request"


def test_should_show_a_deleted_company_of_companies_ids_as_not_found_on_the_next_tick(
    app: Webhooks, linked: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: listed in companies.ids, it stays visible while it is listed
    company = linked[0]
    app.harness.poll()
    before = app.scrape()
    app.harness.fleet.remove(company)
    # Act
    with caplog.at_level(logging.WARNING, logger="exporter"):
        answer = app.deliver(company_deleted(company))
        app.receiver.tick()
    scrape = app.scrape()
    # Check: re-polled at once; down, not found, its last good values kept
    assert answer.status_code == 200
    assert app.requests_for(company) == 2
    assert scrape.companies() == before.companies()
    assert scrape.value("codat_exporter_company_up", company_id=company) == 0
    assert scrape.value("codat_exporter_company_not_found", company_id=company) == 1
    assert scrape.find(TS, company_id=company) == before.find(TS, company_id=company)
    assert f"company {company} not found in Codat (404)" in caplog.text
    assert scrape.value(WEBHOOKS_TOTAL, event_type="company.deleted", result="ok") == 1


def test_should_accept_but_not_poll_a_company_it_does_not_monitor(
    app: Webhooks, clock: FakeClock
) -> None:
    # Prepare
    app.harness.poll()
    stranger = str(uuid.uuid4())
    total_before = sum(app.codat.requests.values())
    # Act
    answers = [
        app.deliver(read_completed(stranger)).status_code,
        app.deliver(connection_event(stranger)).status_code,
    ]
    clock.advance(DEBOUNCE)
    app.receiver.tick()
    # Check
    assert answers == [200, 200]
    assert sum(app.codat.requests.values()) == total_before
    assert app.counted("read.completed", "ok") == 1


# --- refusing what Codat did not send -----------------------------------------------------


def unsigned(app: Webhooks, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json"}


def forged(app: Webhooks, body: bytes) -> dict[str, str]:
    return app.signed(body, secret=new_secret())


def stale_past(app: Webhooks, body: bytes) -> dict[str, str]:
    return app.signed(body, offset=-301)


def stale_future(app: Webhooks, body: bytes) -> dict[str, str]:
    return app.signed(body, offset=301)


def tampered(app: Webhooks, body: bytes) -> dict[str, str]:
    headers = app.signed(body)
    headers["svix-signature"] = headers["svix-signature"][:-6] + "AAAAA="
    return headers


@pytest.mark.parametrize(
    ("make_headers", "result"),
    [
        (unsigned, "missing_headers"),
        (forged, "bad_signature"),
        (tampered, "bad_signature"),
        (stale_past, "stale"),
        (stale_future, "stale"),
    ],
    ids=["unsigned", "forged", "tampered", "stale-301s-ago", "stale-301s-ahead"],
)
def test_should_refuse_with_401_and_count_a_delivery_codat_did_not_sign_now(
    app: Webhooks,
    clock: FakeClock,
    linked: list[str],
    make_headers: Callable[[Webhooks, bytes], dict[str, str]],
    result: str,
) -> None:
    # Prepare
    app.harness.poll()
    body = json.dumps(read_completed(linked[0])).encode()
    before = app.data_status_requests()
    # Act
    answer = app.post(body, make_headers(app, body))
    clock.advance(DEBOUNCE)
    app.receiver.tick()
    # Check
    assert answer.status_code == 401
    assert app.counted("other", result) == 1
    assert app.counted("read.completed", "ok") == 0
    assert app.data_status_requests() == before


def test_should_refuse_a_replayed_delivery_and_poll_once(
    app: Webhooks, clock: FakeClock, linked: list[str]
) -> None:
    # Prepare
    app.harness.poll()
    body = json.dumps(read_completed(linked[0])).encode()
    headers = app.signed(body)
    before = app.data_status_requests()
    # Act
    first = app.post(body, headers)
    clock.advance(60)  # inside the five minutes' tolerance: the replay is not merely stale
    again = app.post(body, headers)
    app.receiver.tick()
    # Check
    assert (first.status_code, again.status_code) == (200, 401)
    assert app.counted("other", "replayed") == 1
    assert app.counted("read.completed", "ok") == 1
    assert app.data_status_requests() == before + 1


def test_should_refuse_a_body_over_the_limit_with_413_and_keep_serving(
    app: Webhooks, linked: list[str]
) -> None:
    # Prepare: validly signed, so only the size is wrong
    event = read_completed(linked[0])
    event["payload"]["padding"] = "x" * MAX_BODY_BYTES
    body = json.dumps(event).encode()
    # Act
    too_large = app.post(body, app.signed(body))
    next_one = app.deliver(read_completed(linked[0]))
    # Check
    assert len(body) > MAX_BODY_BYTES
    assert too_large.status_code == 413
    assert next_one.status_code == 200
    assert app.counted("other", "too_large") == 1
    assert app.counted("read.completed", "ok") == 1


# --- the separate webhook listener ------------------------------------------------------


def test_should_take_webhooks_but_not_serve_metrics_on_a_separate_listener(
    app: Webhooks, clock: FakeClock, linked: list[str]
) -> None:
    # Prepare
    app.harness.poll()
    company = linked[0]
    before = app.requests_for(company)
    separate = app.listener(serve_metrics=False)
    try:
        # Act
        answer = app.deliver(read_completed(company), server=separate)
        metrics = requests.get(separate.url + "/metrics", timeout=5)
        landing = requests.get(separate.url + "/", timeout=5)
        healthy_probe = requests.get(separate.url + "/-/healthy", timeout=5)
        clock.advance(DEBOUNCE)
        app.receiver.tick()
    finally:
        separate.stop()
    # Check
    assert answer.status_code == 200
    assert metrics.status_code == 404
    assert WEBHOOKS_TOTAL not in metrics.text
    assert landing.status_code == 404
    assert healthy_probe.status_code == 200
    assert app.requests_for(company) == before + 1
    assert app.counted("read.completed", "ok") == 1


# --- through the program --------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def answers_200(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_should_repoll_a_company_when_the_program_gets_a_signed_read_completed(
    tmp_path: Path, codat: SimulatedCodat, fleet_ids: list[str]
) -> None:
    # Prepare: an hourly poll, so a second dataStatus request can only come from the webhook
    secret = new_secret()
    company = fleet_ids[-1]
    config = tmp_path / "config.yaml"
    config.write_text(
        f"codat: {{base_url: '{codat.url}', api_key: '{API_KEY}', timeout: 2s}}\n"
        f"poll: {{interval: 1h}}\ncompanies: {{ids: [{', '.join(fleet_ids)}]}}\n"
        f"webhooks: {{enabled: true, secret: '{secret}', debounce: 100ms}}\n"
    )

    def polled() -> int:
        return sum(1 for _, r, c, _ in list(codat.log) if r == DATA_STATUS and c == company)

    with Program("--config.file", str(config), "--web.listen-address", LISTEN_ANYWHERE) as program:
        url = program.url()
        ready = wait_for(lambda: answers_200(url + "/-/ready"))
        first_cycle = polled()
        body = json.dumps(read_completed(company)).encode()
        timestamp = int(time.time())
        headers = {
            "webhook-id": "msg_program_1",
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, "msg_program_1", timestamp, body),
        }
        # Act
        started = time.monotonic()
        answer = requests.post(url + WEBHOOK_PATH, data=body, headers=headers, timeout=5)
        answered_in = time.monotonic() - started
        repolled = wait_for(lambda: polled() >= first_cycle + 1)
        metrics = requests.get(url + "/metrics", timeout=5).text
        program.process.send_signal(signal.SIGTERM)
        code = program.process.wait(timeout=15)
    stderr = program.stderr
    # Check
    assert ready, stderr
    assert first_cycle == 1
    assert answer.status_code == 200
    assert answered_in < 1.0
    assert repolled, stderr
    assert polled() == first_cycle + 1
    samples = Scrape(parse_exposition(metrics), metrics)
    assert samples.value(WEBHOOKS_TOTAL, event_type="read.completed", result="ok") == 1
    assert code == 0
    assert f"accepting Codat webhooks at {url}{WEBHOOK_PATH}" in stderr
    assert "Traceback" not in stderr
