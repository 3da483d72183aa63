"""Split the fleet between replicas, so that each company is polled by exactly one of them.

Configured as::

    sharding:
      shards: 3      # replicas, e.g. of a StatefulSet
      shard: auto    # this replica: 0 to shards-1, or auto (the ordinal ending the hostname)

``CODAT_EXPORTER_SHARDS`` and ``CODAT_EXPORTER_SHARD`` override the file, so one config map
can serve every replica. With ``shard: auto`` the pod ``codat-exporter-2`` is shard 2.

Companies go to shards by jump consistent hashing (Lamping and Veach, "A Fast, Minimal
Memory, Consistent Hash Algorithm", 2014), chosen over rendezvous (HRW) hashing because:

- Shards are numbered 0 to N-1 and are added and removed at the top, which is how a
  StatefulSet scales and exactly the case jump hashing is made for: going from N to N+1
  shards moves the theoretical minimum, 1/(N+1) of the companies, all of them onto the new
  shard; no company moves between the shards that stay.
- A company's shard costs one SHA-256 and about ln(N) arithmetic steps, whatever N is.
  Rendezvous hashing costs N hashes per company, and every replica sorts the whole fleet at
  every discovery.
- The split is even without virtual nodes to tune.

What jump hashing cannot do, remove a shard from the middle, a StatefulSet never does.

The key is SHA-256 of the lower-cased id, never Python's ``hash()``, which is salted per
process: all replicas, and old and new versions during a rolling update, must agree on every
company's shard. Codat ids are UUIDs, which compare case-insensitively, hence the lower-casing.
The tests pin sample assignments, so a change to this function cannot go unnoticed.

>>> shard_of("d1568dde-adf6-11ed-afa1-0242ac120002", 3)
2
>>> Shard(index=2, count=3).owns("D1568DDE-ADF6-11ED-AFA1-0242AC120002")
True
>>> Shard(index=2, count=3).select(["8a210b68-6988-11ed-a1eb-0242ac120002",
...                                 "d1568dde-adf6-11ed-afa1-0242ac120002"])
['d1568dde-adf6-11ed-afa1-0242ac120002']
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SHARD_ENV = "CODAT_EXPORTER_SHARD"
SHARDS_ENV = "CODAT_EXPORTER_SHARDS"
MAX_SHARDS = 1000

_MASK64 = (1 << 64) - 1
_ORDINAL = re.compile(r"-(\d+)$")


class ShardingError(ValueError):
    """A bad sharding setting. ``key`` is the config key it belongs to, for the ConfigError.

    The message leaves the key out, so the caller can write ``f"{exc.key}: {exc}"``.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def jump_hash(key: int, buckets: int) -> int:
    """The bucket, 0 to ``buckets``-1, of a 64-bit ``key`` (the paper's algorithm, exactly).

    >>> jump_hash(42, 57), jump_hash(256, 1024)
    (43, 520)
    """
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, not {buckets}")
    key &= _MASK64
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * 2862933555777941757 + 1) & _MASK64
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def company_key(company_id: str) -> int:
    """The stable 64-bit hash of a company id: the first 8 bytes of SHA-256, big-endian."""
    digest = hashlib.sha256(company_id.strip().lower().encode()).digest()
    return int.from_bytes(digest[:8], "big")


def shard_of(company_id: str, shards: int) -> int:
    """The shard, 0 to ``shards``-1, that polls ``company_id``."""
    return jump_hash(company_key(company_id), shards)


@dataclass(frozen=True)
class Shard:
    """One replica's share of the fleet. ``Shard(0, 1)``, the default, owns every company."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ShardingError(
                "sharding.shards",
                f"must be a whole number from 1 to {MAX_SHARDS}, not {self.count}",
            )
        if not 0 <= self.index < self.count:
            raise ShardingError("sharding.shard", _out_of_range(self.index, self.count))

    def owns(self, company_id: str) -> bool:
        return self.count == 1 or shard_of(company_id, self.count) == self.index

    def select(self, company_ids: Iterable[str]) -> list[str]:
        """The ids this shard polls, in their original order."""
        return [company_id for company_id in company_ids if self.owns(company_id)]

    def __str__(self) -> str:
        """For the start-up log and ``--check-config``, e.g. ``shard 2 of 3``."""
        return f"shard {self.index} of {self.count}"


def resolve_shard(
    shard: int | str, shards: int, hostname: str, environ: Mapping[str, str]
) -> Shard:
    """This replica's shard from the config values, the environment and the hostname.

    ``shard`` is an index or ``"auto"``; ``CODAT_EXPORTER_SHARD`` and ``CODAT_EXPORTER_SHARDS``
    replace the config values when set and not empty. ``auto`` takes the ordinal at the end of
    the hostname's first label, as StatefulSet pods are named. With a single shard, ``auto`` is
    0 without looking at the hostname, so the default works in a Deployment, whose pod names
    can end in digits by chance. Raises ``ShardingError`` (a ``ValueError``):

    >>> resolve_shard("auto", 3, "codat-exporter-2", {})
    Shard(index=2, count=3)
    >>> resolve_shard("auto", 3, "codat-exporter-1", {"CODAT_EXPORTER_SHARD": "0"})
    Shard(index=0, count=3)
    >>> resolve_shard("auto", 3, "codat-exporter-3", {})
    Traceback (most recent call last):
    ...
    exporter.config.sharding.ShardingError: auto: hostname 'codat-exporter-3' ends in ordinal 3, \
but there are only 3 shards (0 to 2); make sharding.shards match the number of replicas
    """
    count = _shards(shards, environ)
    from_env = environ.get(SHARD_ENV, "").strip()
    value: int | str = from_env or shard
    source = f" (from {SHARD_ENV})" if from_env else ""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return Shard(_ordinal(hostname, count), count)
    index = _whole_number(value)
    if index is None:
        raise ShardingError(
            "sharding.shard",
            f"must be auto or a whole number from 0 to {count - 1}, not {value!r}{source}",
        )
    if not 0 <= index < count:
        raise ShardingError("sharding.shard", _out_of_range(index, count) + source)
    return Shard(index, count)


def _shards(shards: int, environ: Mapping[str, str]) -> int:
    from_env = environ.get(SHARDS_ENV, "").strip()
    value: int | str = from_env or shards
    count = _whole_number(value)
    if count is None or not 1 <= count <= MAX_SHARDS:
        source = f" (from {SHARDS_ENV})" if from_env else ""
        raise ShardingError(
            "sharding.shards",
            f"must be a whole number from 1 to {MAX_SHARDS}, not {value!r}{source}",
        )
    return count


def _ordinal(hostname: str, count: int) -> int:
    if count == 1:
        return 0
    name = hostname.strip().split(".", 1)[0]
    match = _ORDINAL.search(name)
    if match is None:
        raise ShardingError(
            "sharding.shard",
            f"auto needs a hostname ending in -<ordinal>, like a StatefulSet pod's "
            f"(codat-exporter-2), but the hostname is {hostname!r}; "
            f"set sharding.shard or {SHARD_ENV} to 0 to {count - 1}",
        )
    ordinal = int(match[1])
    if ordinal >= count:
        raise ShardingError(
            "sharding.shard",
            f"auto: hostname {name!r} ends in ordinal {ordinal}, but there are only {count} "
            f"shards (0 to {count - 1}); make sharding.shards match the number of replicas",
        )
    return ordinal


def _whole_number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _out_of_range(index: int, count: int) -> str:
    return f"{index} is out of range for {count} shards (use 0 to {count - 1}, or auto)"
