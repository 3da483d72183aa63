"""Files the exporter keeps on disk and replaces whole (the state file, and any other): how
they are written, cleaned up after and read back.

``write`` puts the bytes in a temporary file beside the target (``tempfile.mkstemp``:
``state.json.k3x9_q2a.tmp``), fsyncs it, renames it over the target and fsyncs the
directory, so a crash leaves the old file or the new one, never half of one. A kill between
the temporary file's creation and its rename (SIGKILL, the OOM killer) leaves the temporary
file behind, and nothing else ever removes it: 20 kills left 21 files, 22 MB. So each start
calls ``remove_leftovers`` for each target before it first writes it: the regular files
named as ``write`` names that target's temporary files, nothing else. Do not point two
processes at one target: one's start would remove the other's write in progress (which then
fails once, and is written again a cycle later).

``read`` reads only a regular file (a symlink is followed, as Kubernetes mounts files
through symlinks) and only up to a bound stated by the caller: a symlink to /dev/zero, a
FIFO, a directory or a file of 2 GB is refused before any of it is read, with a reason for
one log line::

    /var/lib/codat-freshness-exporter/state.json: a FIFO (named pipe), not a regular file
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".tmp"


def _prefix(target: Path) -> str:
    return target.name + "."


def write(path: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` with ``data`` atomically; OSError when the disk refuses. ``data``
    may come in pieces, written as they come: a state file at fleet size is never joined
    into one more copy of itself."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=_prefix(target), suffix=SUFFIX, dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            if isinstance(data, bytes):
                out.write(data)
            else:
                out.writelines(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _leftover_name(target: Path) -> re.Pattern[str]:
    """The names ``write`` gives ``target``'s temporary files: mkstemp's prefix, eight of
    its random characters, its suffix."""
    return re.compile(re.escape(_prefix(target)) + r"[a-z0-9_]{8}" + re.escape(SUFFIX))


def remove_leftovers(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Remove the temporary files interrupted writes of ``path`` left; (files, bytes)
    removed. One log line when there were any, or any could not be removed::

        removed 21 temporary files (22,020,096 bytes) left beside /var/lib/x/state.json by
        writes cut short (a kill or a crash)
    """
    target = Path(path)
    name = _leftover_name(target)
    removed = size = 0
    failed: list[str] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return 0, 0  # no directory to clean: the first write says why it fails
    for entry in entries:
        try:
            if not name.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            length = entry.stat(follow_symlinks=False).st_size
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            failed.append(f"{entry.name}: {exc.strerror or exc}")
            continue
        removed += 1
        size += length
    if removed or failed:
        unremoved = f"; could not remove {len(failed)}: {failed[0]}" if failed else ""
        log.warning(
            "removed %d temporary file%s (%s bytes) left beside %s by writes cut short "
            "(a kill or a crash)%s",
            removed, "" if removed == 1 else "s", f"{size:,}", target, unremoved,
        )  # fmt: skip
    return removed, size


class Refused(OSError):
    """A file ``read`` will not read; the message says what it is and why, for one log
    line."""


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check(status: os.stat_result, max_bytes: int, setting: str) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = next((k for test, k in _KINDS if test(status.st_mode)), "not a file")
        raise Refused(f"{kind}, not a regular file")
    if status.st_size > max_bytes:
        raise Refused(f"{status.st_size:,} bytes, more than {setting} ({max_bytes:,})")


def read(path: str | os.PathLike[str], max_bytes: int, setting: str = "the limit") -> bytes:
    """The whole of ``path``, a regular file (through symlinks) of at most ``max_bytes``;
    Refused (naming ``setting``, the bound's key) for anything else, before any of it is
    read, FileNotFoundError or another OSError when it cannot be opened.

    Looked at before it is opened, so that a device is never opened, and again once open
    (O_NONBLOCK: a FIFO swapped in meanwhile cannot block the open), which is what is read.
    """
    _check(os.stat(path), max_bytes, setting)
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(handle, "rb") as file:
        status = os.fstat(file.fileno())
        _check(status, max_bytes, setting)
        data = file.read(status.st_size + 1)  # one more: a file grown meanwhile shows
    if len(data) > max_bytes:
        raise Refused(f"more than {setting} ({max_bytes:,} bytes): it grew as it was read")
    return data
