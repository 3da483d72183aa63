"""Sharding: every company polled by exactly one replica, and few move when replicas are added."""

from __future__ import annotations

import doctest
import random
import uuid

import pytest

from exporter.config import sharding
from exporter.config.sharding import Shard, ShardingError, jump_hash, resolve_shard, shard_of

FLEET_SIZE = 10_000


def make_fleet(size: int = FLEET_SIZE, seed: int = 2024) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(size)]


FLEET = make_fleet()


@pytest.mark.parametrize("shards", [1, 2, 3, 5, 8, 16])
def test_should_give_every_company_to_exactly_one_shard(shards: int) -> None:
    # Prepare
    replicas = [Shard(index, shards) for index in range(shards)]

    # Act
    selections = [replica.select(FLEET) for replica in replicas]

    # Check
    assert sum(len(selection) for selection in selections) == len(FLEET)
    assert set().union(*selections) == set(FLEET)


@pytest.mark.parametrize("shards", [2, 3, 8, 16])
def test_should_split_the_fleet_evenly(shards: int) -> None:
    # Prepare
    even = len(FLEET) / shards

    # Act
    sizes = [len(Shard(index, shards).select(FLEET)) for index in range(shards)]

    # Check
    assert all(abs(size - even) < 0.1 * even for size in sizes), sizes


@pytest.mark.parametrize("shards", range(1, 10))
def test_should_move_only_about_one_in_n_plus_one_companies_when_a_shard_is_added(
    shards: int,
) -> None:
    # Prepare
    before = {company: shard_of(company, shards) for company in FLEET}

    # Act
    after = {company: shard_of(company, shards + 1) for company in FLEET}

    # Check
    moved = [company for company in FLEET if before[company] != after[company]]
    assert {after[company] for company in moved} == {shards}, "only onto the new shard"
    assert abs(len(moved) / len(FLEET) - 1 / (shards + 1)) < 0.02


def test_should_keep_each_companys_shard_across_releases() -> None:
    # Prepare: pinned when sharding shipped. Replicas on different versions during a rolling
    # update must agree, so a failure here means the hash changed: revert it.
    pinned = {
        "8a210b68-6988-11ed-a1eb-0242ac120002": (0, 0, 6),
        "d1568dde-adf6-11ed-afa1-0242ac120002": (0, 2, 7),
        "940eee3c-ba6f-475c-ae84-496e7857dd86": (1, 2, 2),
        "b938451e-e325-4aa6-b340-6bc44dc2a627": (0, 0, 5),
        "c2354e2b-b774-4a63-81d8-fac168fb90d7": (0, 0, 3),
        "a2da95a8-3ec3-4dd6-887e-840043e58844": (1, 1, 1),
    }

    # Act
    actual = {company: tuple(shard_of(company, n) for n in (2, 3, 8)) for company in pinned}

    # Check
    assert actual == pinned


def test_should_put_an_id_on_the_same_shard_whatever_its_case() -> None:
    # Prepare
    company = "d1568dde-adf6-11ed-afa1-0242ac120002"

    # Act
    shards = {shard_of(variant, 8) for variant in (company, company.upper(), f" {company}\n")}

    # Check
    assert len(shards) == 1


@pytest.mark.parametrize(
    ("key", "buckets", "expected"),
    [
        (1, 1, 0),
        (42, 57, 43),
        (256, 1024, 520),
        (0xDEAD10CC, 1, 0),
        (0xDEAD10CC, 666, 361),
        (16045690984833335023, 255, 237),
    ],
)
def test_should_match_the_published_jump_hash_results(
    key: int, buckets: int, expected: int
) -> None:
    # Prepare: vectors shared by the reference implementations (e.g. ClickHouse's
    # jumpConsistentHash tests), so this is the paper's algorithm and not a look-alike.

    # Act
    bucket = jump_hash(key, buckets)

    # Check
    assert bucket == expected


def test_should_keep_the_original_order_when_selecting() -> None:
    # Prepare
    shard = Shard(1, 3)

    # Act
    selected = shard.select(FLEET)

    # Check
    position = {company: i for i, company in enumerate(FLEET)}
    assert selected == sorted(selected, key=position.__getitem__)
    assert 0 < len(selected) < len(FLEET)


def test_should_own_everything_with_the_default_single_shard() -> None:
    # Prepare
    shard = Shard()

    # Act
    selected = shard.select(FLEET)

    # Check
    assert selected == FLEET
    assert str(shard) == "shard 0 of 1"


@pytest.mark.parametrize(
    ("hostname", "shards", "expected"),
    [
        ("codat-exporter-0", 3, Shard(0, 3)),
        ("codat-exporter-2", 3, Shard(2, 3)),
        ("codat-exporter-11", 12, Shard(11, 12)),
        ("codat-exporter-1.codat-exporter.monitoring.svc.cluster.local", 2, Shard(1, 2)),
        ("web-7d9f8c6b5-x2k4p", 1, Shard(0, 1)),
        ("codat-exporter-5", 1, Shard(0, 1)),
    ],
)
def test_should_take_the_shard_from_a_statefulset_hostname_when_auto(
    hostname: str, shards: int, expected: Shard
) -> None:
    # Prepare
    environ: dict[str, str] = {}

    # Act
    shard = resolve_shard("auto", shards, hostname, environ)

    # Check
    assert shard == expected


def test_should_let_the_environment_override_the_config_file() -> None:
    # Prepare
    environ = {"CODAT_EXPORTER_SHARD": "3", "CODAT_EXPORTER_SHARDS": "4"}

    # Act
    shard = resolve_shard(0, 2, "codat-exporter-1", environ)

    # Check
    assert shard == Shard(3, 4)


def test_should_accept_auto_from_the_environment() -> None:
    # Prepare
    environ = {"CODAT_EXPORTER_SHARD": "auto", "CODAT_EXPORTER_SHARDS": " 3 "}

    # Act
    shard = resolve_shard(0, 1, "codat-exporter-2", environ)

    # Check
    assert shard == Shard(2, 3)


def test_should_ignore_empty_environment_variables() -> None:
    # Prepare
    environ = {"CODAT_EXPORTER_SHARD": "", "CODAT_EXPORTER_SHARDS": " "}

    # Act
    shard = resolve_shard(1, 2, "anything", environ)

    # Check
    assert shard == Shard(1, 2)


@pytest.mark.parametrize(
    ("shard", "shards", "hostname", "environ", "key", "message"),
    [
        (0, 0, "h", {}, "sharding.shards", "must be a whole number from 1 to 1000, not 0"),
        (0, 1001, "h", {}, "sharding.shards", "must be a whole number from 1 to 1000, not 1001"),
        (
            0,
            2,
            "h",
            {"CODAT_EXPORTER_SHARDS": "two"},
            "sharding.shards",
            "must be a whole number from 1 to 1000, not 'two' (from CODAT_EXPORTER_SHARDS)",
        ),
        (
            3,
            3,
            "h",
            {},
            "sharding.shard",
            "3 is out of range for 3 shards (use 0 to 2, or auto)",
        ),
        (
            0,
            3,
            "h",
            {"CODAT_EXPORTER_SHARD": "7"},
            "sharding.shard",
            "7 is out of range for 3 shards (use 0 to 2, or auto) (from CODAT_EXPORTER_SHARD)",
        ),
        (
            "first",
            3,
            "h",
            {},
            "sharding.shard",
            "must be auto or a whole number from 0 to 2, not 'first'",
        ),
        (
            0,
            3,
            "h",
            {"CODAT_EXPORTER_SHARD": "-1"},
            "sharding.shard",
            "must be auto or a whole number from 0 to 2, not '-1' (from CODAT_EXPORTER_SHARD)",
        ),
        (
            "auto",
            3,
            "exporter",
            {},
            "sharding.shard",
            "auto needs a hostname ending in -<ordinal>, like a StatefulSet pod's "
            "(codat-exporter-2), but the hostname is 'exporter'; "
            "set sharding.shard or CODAT_EXPORTER_SHARD to 0 to 2",
        ),
        (
            "auto",
            3,
            "codat-exporter-3",
            {},
            "sharding.shard",
            "auto: hostname 'codat-exporter-3' ends in ordinal 3, but there are only 3 shards "
            "(0 to 2); make sharding.shards match the number of replicas",
        ),
    ],
)
def test_should_reject_bad_values_with_a_message_for_the_config_key(
    shard: int | str,
    shards: int,
    hostname: str,
    environ: dict[str, str],
    key: str,
    message: str,
) -> None:
    # Prepare: see the parameters

    # Act
    with pytest.raises(ShardingError) as caught:
        resolve_shard(shard, shards, hostname, environ)

    # Check
    assert (caught.value.key, str(caught.value)) == (key, message)
    assert isinstance(caught.value, ValueError)


def test_should_reject_a_boolean_where_a_number_belongs() -> None:
    # Prepare: YAML turns `shard: yes` into True, which Python would take for 1

    # Act
    with pytest.raises(ShardingError) as caught:
        resolve_shard(True, 3, "h", {})

    # Check
    assert caught.value.key == "sharding.shard"


def test_should_keep_the_docstring_examples_true() -> None:
    # Prepare: the examples in the docstrings are the module's documentation
    module = sharding

    # Act
    results = doctest.testmod(module)

    # Check
    assert results.attempted > 0
    assert results.failed == 0
