"""How the project's YAML files are declared and checked, so that each setting is written once.

A section is a frozen dataclass, and each of its fields made with ``setting()`` is one key:
its type (a ``Kind``: how to read the value, and how the reference names it), its default and a
one-line description. ``read_section`` checks a mapping against those fields and builds the
dataclass; ``exporter.config.document`` lists them for docs/configuration.md.
Adding a section is writing one dataclass, adding a key one field::

    @dataclass(frozen=True)
    class PollConfig:
        interval: float = setting(DURATION, "time between poll cycles", default=300.0)

A section's rules that tie keys together go in its ``check(self, at)`` method, which
``read_section`` calls once the values are read.

The exporter's ``--config.file`` and the generator's ``monitoring/config.yml`` are declared
so. Every problem is one ``ConfigError`` line, key path first, never the offending secret;
``--web.config.file`` shares the key check (``check_keys``)::

    poll.intervall: unknown key; did you mean interval?
    codat.timeout: '30 seconds' is not a duration (use e.g. 90s, 5m, 1h30m, 2d)

A value can also be accepted but doubtful (a data type the contract does not list):
``Where.warn`` records one line for ``--check-config`` to print and a start to log.
"""

from __future__ import annotations

import difflib
import enum
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from exporter.config.durations import format_duration, parse_duration

T = TypeVar("T")
S = TypeVar("S")


class ConfigError(Exception):
    """A configuration problem, already phrased for the operator (one line, key first)."""


# --- files, messages and key checks --------------------------------------------------------


def read_yaml(path: str | os.PathLike[str], what: str) -> Any:
    """A YAML file's content ({} when empty), or a ConfigError naming the file and line.

    The message gives YAML's description of the problem, never the offending text, which
    may be a secret on a line of its own.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {what} is not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except RecursionError:  # PyYAML's parser recurses once per level of nesting
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    return {} if raw is None else raw


def shown(text: str) -> str:
    """``text`` for a message, quoted when it would break the message's one line."""
    return text if text.isprintable() and text else repr(text)


def join(path: str, key: str) -> str:
    key = shown(key)
    return f"{path}.{key}" if path else key


def kind_of(value: Any) -> str:
    """What a YAML value is, in the words of a message: 'a list', 'a number'."""
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``"; did you mean X?"`` for the nearest of ``known``, or ``""`` when none is near."""
    hint = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {hint[0]}?" if hint else ""


def check_keys(
    raw: Any, path: str, allowed: Sequence[str], unsupported: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``raw`` as a section ({} for null) whose keys are all ``allowed``.

    ``unsupported`` names keys the format has but this exporter refuses, with why.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or '<top>'}: must be a mapping, not {kind_of(raw)}")
    for key in raw:
        where = join(path, str(key))
        if unsupported and key in unsupported:
            raise ConfigError(f"{where}: not supported by this exporter; {unsupported[key]}")
        if not isinstance(key, str) or key not in allowed:
            more = did_you_mean(str(key), allowed) or f"; known keys: {', '.join(allowed)}"
            raise ConfigError(f"{where}: unknown key{more}")
    return raw


# --- declaring settings --------------------------------------------------------------------


@dataclass
class Reading:
    """One file being read: what its settings may consult, and the warnings gathered."""

    environ: Mapping[str, str] = field(default_factory=dict)
    hostname: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Where:
    """A key path in the file being read; ``str()`` gives it for a message."""

    reading: Reading
    path: str = ""

    def __str__(self) -> str:
        return self.path or "<top>"

    def key(self, name: str) -> Where:
        return Where(self.reading, join(self.path, name))

    def item(self, index: int) -> Where:
        return Where(self.reading, f"{self.path}[{index}]")

    def warn(self, message: str) -> None:
        self.reading.warnings.append(f"{self}: {message}")


@dataclass(frozen=True)
class Kind(Generic[T]):
    """A type of value: how to read it from YAML, and how the reference names it and its default.

    ``read(value, at)`` gets the value as YAML gave it (never null: an absent or null key
    takes the default) and raises ``ConfigError`` naming ``at``.
    """

    name: str
    read: Callable[[Any, Where], T]
    show: Callable[[Any], str] | None = None
    """How the reference writes a default of this kind, when not as YAML would (``5m``, not 300)."""
    section: type | None = None
    """The dataclass of a nested section: read even when absent, documented key by key."""


@dataclass(frozen=True)
class Setting:
    """What ``setting()`` records on a field, in its metadata."""

    kind: Kind[Any]
    doc: str
    key: str | None
    """The YAML key, when it is not the field's name."""
    from_file: bool
    """Whether ``<key>_file`` may give the value instead, read from that file."""


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET
_METADATA = "exporter.setting"


def setting(
    kind: Kind[T],
    doc: str,
    *,
    default: T | _Unset = _UNSET,
    key: str | None = None,
    from_file: bool = False,
    repr: bool = True,
) -> T:
    """A dataclass field that is a key of the file; without ``default`` the key is required.

    ``from_file``: the key ``<key>_file`` names a file holding the value instead (for a
    secret kept in a mounted file); exactly one of the two may be set.
    """
    metadata = {_METADATA: Setting(kind, doc, key, from_file)}
    if isinstance(default, _Unset):
        made: T = field(repr=repr, metadata=metadata)
    elif type(default).__hash__ is None:  # a mapping: dataclasses refuse it as a default
        made = field(default_factory=lambda: default, repr=repr, metadata=metadata)
    else:
        made = field(default=default, repr=repr, metadata=metadata)
    return made


def section(cls: type[S], *, required: bool = False) -> S:
    """A field holding the nested section ``cls``, whose keys are ``cls``'s settings."""
    kind: Kind[S] = Kind("section", lambda raw, at: read_section(cls, raw, at), section=cls)
    if required:
        return setting(kind, "")
    return setting(kind, "", default=cls())


def settings_of(cls: type) -> Iterator[tuple[Field[Any], str, Setting]]:
    """Each field of ``cls`` made with ``setting()``, with its YAML key."""
    for f in fields(cls):
        declared = f.metadata.get(_METADATA)
        if isinstance(declared, Setting):
            yield f, declared.key or f.name, declared


def _has_default(f: Field[Any]) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def read_section(cls: type[S], raw: Any, at: Where) -> S:
    """``cls`` built from the mapping ``raw`` found at ``at``; raises ``ConfigError``."""
    declared = list(settings_of(cls))
    allowed = [key for _, key, _ in declared]
    allowed += [f"{key}_file" for _, key, s in declared if s.from_file]
    mapping = check_keys(raw, at.path, allowed)
    values = {}
    for f, key, s in declared:
        value = _read_value(mapping, key, s, at, required=not _has_default(f))
        if value is not _UNSET:
            values[f.name] = value
    result = cls(**values)
    check: Callable[[Where], None] | None = getattr(result, "check", None)
    if check is not None:
        check(at)
    return result


def _read_value(
    mapping: dict[str, Any], key: str, declared: Setting, at: Where, *, required: bool
) -> Any:
    where, value = at.key(key), mapping.get(key)
    if declared.from_file:
        file_key = f"{key}_file"
        in_file = mapping.get(file_key) is not None
        if in_file == (value is not None) and (in_file or required):
            raise ConfigError(f"{where}: set exactly one of {where} and {at.key(file_key)}")
        if in_file:
            where = at.key(file_key)
            value = _read_text_file(mapping[file_key], where)
    if value is None and declared.kind.section is None:
        if required:
            raise ConfigError(f"{where}: required")
        return _UNSET
    return declared.kind.read(value, where)


def _read_text_file(value: Any, at: Where) -> str:
    """The trimmed text of the file named by ``value``, which must not be empty."""
    name = STRING.read(value, at)
    try:
        text = Path(name).read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as exc:
        reason = {UnicodeDecodeError: "not UTF-8 text", ValueError: "a NUL byte in the path"}.get(
            type(exc), getattr(exc, "strerror", None) or "unreadable"
        )
        raise ConfigError(f"{at}: cannot read {shown(name)}: {reason}") from None
    if not text:
        raise ConfigError(f"{at}: {shown(name)} is empty")
    return text


# --- kinds of value every section may use ---------------------------------------------------


MAX_DURATION = 10 * 365 * 86400.0
"""Longer would be a mistake, and far longer overflows the scheduler's timedelta."""


def _duration(value: Any, at: Where) -> float:
    if isinstance(value, str):
        try:
            seconds = parse_duration(value.strip())
        except (ValueError, OverflowError):  # overflow: more digits than a float holds
            pass
        else:
            if seconds <= 0:
                raise ConfigError(f"{at}: must be longer than 0s")
            if seconds > MAX_DURATION:
                raise ConfigError(f"{at}: must be at most 3650d")
            return seconds
    raise ConfigError(f"{at}: {value!r} is not a duration (use e.g. 90s, 5m, 1h30m, 2d)")


def _bool(value: Any, at: Where) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{at}: must be true or false, not {value!r}")
    return value


def _string(value: Any, at: Where) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{at}: must be a non-empty string")
    return value.strip()


def _text(value: Any, at: Where) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{at}: must be a string, not {kind_of(value)}")
    return value.strip()


DURATION = Kind("duration", _duration, format_duration)
BOOL = Kind("boolean", _bool)
STRING = Kind("string", _string)
TEXT = Kind("string", _text)
"""A string that may be empty (empty: not set)."""


def whole_number(limit: int) -> Kind[int]:
    def read(value: Any, at: Where) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ConfigError(f"{at}: must be a whole number from 1 to {limit}, not {value!r}")
        return value

    return Kind(f"integer, 1-{limit:,}", read)


def number(limit: float) -> Kind[float]:
    def read(value: Any, at: Where) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= limit:
            raise ConfigError(
                f"{at}: must be a number above 0 and at most {limit:g}, not {value!r}"
            )
        return float(value)

    return Kind(f"number, above 0 to {limit:g}", read)


def list_of(item: Kind[T], name: str = "") -> Kind[tuple[T, ...]]:
    """A YAML list of ``item``s, read one by one so an error names its index."""

    def read(value: Any, at: Where) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{at}: must be a list, not {kind_of(value)}")
        return tuple(item.read(v, at.item(i)) for i, v in enumerate(value))

    return Kind(name or f"list of {item.name}s", read)
