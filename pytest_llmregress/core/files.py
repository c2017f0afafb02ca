"""Writing a file so that readers see the old content or the new, never half of one.

:func:`atomic_write_bytes` (and :func:`atomic_write_text`) is the one way the package replaces a
file: a temporary file in the same directory, flushed and synced to disk, then renamed over the
target with :func:`os.replace`; the temporary file is removed on any failure. Results
documents, recorded references, imported golden files, canary config edits and lifecycle
overrides all go through it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = ["FileChangedError", "atomic_write_bytes", "atomic_write_text"]


class FileChangedError(Exception):
    """The file no longer holds the ``expected`` bytes: someone else wrote it meanwhile."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(f"{os.fspath(path)} changed while it was being written")
        self.path = os.fspath(path)


def _create_temp(target: Path) -> tuple[int, str]:
    """A new temporary file beside ``target``, created as ``open()`` creates files (0666 minus
    the umask, which is not read: changing it to read it is not thread-safe)."""
    for _ in range(100):
        name = os.path.join(
            target.parent, f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        )
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name beside {target}")  # pragma: no cover


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes | Iterable[bytes],
    *,
    keep_mode: bool = True,
    expected: bytes | None = None,
) -> None:
    """Replace ``path`` with ``data`` atomically (``data``: the bytes, or pieces of them written
    as they come, so that a large document need not be held whole).

    With ``keep_mode`` an existing file keeps its permission bits; a new file (or any file,
    without ``keep_mode``) gets the usual ones, 0666 minus the umask. With ``expected``, the
    file must still hold exactly those bytes just before the rename, else nothing is written
    and :class:`FileChangedError` is raised. The directory must exist. ``OSError`` from
    writing passes through; the temporary file never stays behind.
    """
    target = Path(path)
    mode: int | None = None
    if keep_mode:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.stat(target).st_mode)
    fd, temp = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                handle.writelines(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        if expected is not None:
            with open(target, "rb") as handle:
                if handle.read() != expected:
                    raise FileChangedError(target)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    # The rename itself is on disk once the directory is synced (not possible everywhere).
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(
    path: str | os.PathLike[str],
    text: str,
    *,
    keep_mode: bool = True,
    expected: bytes | None = None,
) -> None:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8, line breaks written as they are."""
    atomic_write_bytes(path, text.encode("utf-8"), keep_mode=keep_mode, expected=expected)
