"""Filesystem steps that never leave a half-written result: a directory built beside its target and swapped in,
a file written beside itself and renamed over, and the clean-up of what a killed process left behind.

Temporary siblings are named ``.NAME.nn2aie-KIND-PID-TOKEN`` (KIND ``tmp`` for a result being written, ``old``
for a previous result moved aside), so a later run can tell whose they are and whether that process still runs.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import pathlib
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from typing import BinaryIO

_SIBLING = "{name}.nn2aie-{kind}-{pid}-{token}"


def sibling(out_dir: pathlib.Path, kind: str) -> pathlib.Path:
    """A hidden sibling of ``out_dir`` that names what it is and which process made it."""
    return out_dir.with_name("." + _SIBLING.format(name=out_dir.name, kind=kind, pid=os.getpid(),
                                                   token=secrets.token_hex(4)))


def stale_siblings(out_dir: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """(kind, path) of the temporary siblings of ``out_dir`` whose process no longer runs."""
    pattern = re.compile(r"\." + re.escape(out_dir.name) + r"\.nn2aie-(tmp|old)-(\d+)-[0-9a-f]+")
    for path in sorted(out_dir.parent.iterdir()):
        m = pattern.fullmatch(path.name)
        if m and not _process_alive(int(m.group(2))):
            yield m.group(1), path


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # ours, or no safe liveness test (os.kill ends it on Windows)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove(path: pathlib.Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def replace_dir(new: pathlib.Path, out_dir: pathlib.Path) -> None:
    """Replace ``out_dir`` by the directory ``new`` (a sibling). With an atomic exchange where the system has one,
    else by two renames; either way no moment leaves a half-written project at ``out_dir``."""
    if not out_dir.exists() and not out_dir.is_symlink():
        new.rename(out_dir)
        return
    if _exchange(new, out_dir):
        remove(new)  # now the previous project
        return
    backup = sibling(out_dir, "old")
    try:
        out_dir.rename(backup)
        new.rename(out_dir)
    except BaseException:
        if backup.exists() and not out_dir.exists():  # put the previous project back
            backup.rename(out_dir)
        raise
    remove(backup)


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Swap two directory entries atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not
    available (other systems, old kernels or libc, file systems without it)."""
    fn = _renameat2()
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def write_file(path: pathlib.Path, fill: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a temporary sibling renamed over it: an interrupted run leaves the previous file (or
    none), never a truncated one."""
    tmp = sibling(path, "tmp")
    try:
        with open(tmp, "wb") as f:
            fill(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
