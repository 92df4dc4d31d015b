"""Private directories and files: created owner-only, written without following symlinks.

The local stack's home (``.local/``) and the secrets in it, and the compose stack's ``.env``,
are made here. A directory is created with mode 0700 and a file with mode 0600 by the call
that creates them (never widened and narrowed afterwards), so no other user can open them in
between. A private file is written to a new, randomly named temporary file in the same
directory, opened with ``O_CREAT|O_EXCL|O_NOFOLLOW`` (a planted file or symlink at that name
makes the open fail instead of redirecting the write), then renamed over the target; a target
that is a symlink is refused.

Processes the stack launches get :data:`PRIVATE_UMASK`, so what they create (databases, logs,
artifacts) is owner-only too.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
_TEMP_ATTEMPTS = 8


class UnsafePathError(PermissionError):
    """A private file or directory cannot be made safely; the message names the path."""


def _mode(st: os.stat_result) -> str:
    return oct(stat.S_IMODE(st.st_mode))


def own_private_group(gid: int) -> bool:
    """Whether ``gid`` is this user's private group: named after the user, no other member
    (the Debian/Ubuntu scheme that comes with umask 002)."""
    try:
        group = grp.getgrgid(gid)
        return (
            gid == os.getegid()
            and group.gr_name == pwd.getpwuid(os.geteuid()).pw_name
            and not [m for m in group.gr_mem if m != group.gr_name]
        )
    except KeyError:
        return False


def _check_existing_dir(path: Path) -> None:
    """Accept an existing directory only if it is ours and nobody else can write into it.

    A directory others can only read, or that only the user's own private group can write
    (made by an earlier version under umask 022 or 002), is narrowed to 0700 with a warning.

    Raises:
        UnsafePathError: It is not a directory, belongs to another user, or other users can
            write into it (they may have planted files).
    """
    try:
        st = path.stat()  # a symlinked home (e.g. to another disk) is the user's choice
    except FileNotFoundError as exc:
        raise UnsafePathError(f"{path} is a dangling symlink") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{path} exists and is not a directory")
    if st.st_uid != os.geteuid():
        raise UnsafePathError(f"{path} belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & 0o002 or (st.st_mode & 0o020 and not own_private_group(st.st_gid)):
        raise UnsafePathError(
            f"{path} is writable by other users (mode {_mode(st)}): check its contents, then "
            f"`chmod 700 {path}`"
        )
    if st.st_mode & 0o077:
        log.warning("%s was readable by other users (mode %s); now 0700", path, _mode(st))
        os.chmod(path, DIR_MODE)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents, each with mode 0700 from the start.

    Every directory this call creates is made by ``mkdir(mode=0o700)`` and then checked, so it
    is never open to others, whatever the umask. An existing ``path`` is checked instead (see
    ``_check_existing_dir``); existing parents are left alone.

    Returns:
        ``path``.

    Raises:
        UnsafePathError: ``path`` exists but is not a private directory of this user, or the
            umask took the owner's rights away from a new directory.
    """
    path = Path(path)
    missing: list[Path] = []
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    created = set()
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue  # made concurrently: checked below like any existing one
        created.add(directory)
        st = os.lstat(directory)
        if stat.S_IMODE(st.st_mode) != DIR_MODE:
            raise UnsafePathError(
                f"{directory} was created with mode {_mode(st)}, not 0o700: the umask takes "
                "the owner's rights away"
            )
    if path not in created:
        _check_existing_dir(path)
    return path


def refuse_symlink(path: Path) -> None:
    """Raise UnsafePathError when ``path`` is a symlink or exists as something not a file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(
            f"{path} is a symlink (to {os.readlink(path)}): refusing to write a private file "
            "through it; remove it"
        )
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{path} exists and is not a regular file")


def _open_temp(directory: Path, name: str) -> tuple[Path, int]:
    """A new file with a random name in ``directory``, mode 0600, opened exclusively."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_TEMP_ATTEMPTS):
        tmp = directory / f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            return tmp, os.open(tmp, flags, FILE_MODE)
        except FileExistsError:  # taken (or planted): draw another name
            continue
    raise UnsafePathError(
        f"could not create a temporary file for {name} in {directory} "
        f"({_TEMP_ATTEMPTS} random names were taken)"
    )


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically, never through a symlink.

    A missing parent directory is created private (``make_private_dir``); an existing one is
    left as it is. The text goes to a new temporary file next to ``path`` (random name,
    ``O_EXCL|O_NOFOLLOW``), is flushed to disk, then renamed over ``path``.

    Raises:
        UnsafePathError: ``path`` is a symlink or not a regular file, or no temporary file
            could be created.
    """
    path = Path(path)
    if not os.path.lexists(path.parent):
        make_private_dir(path.parent)
    refuse_symlink(path)
    tmp, fd = _open_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        refuse_symlink(path)  # planted while we wrote? (the rename would replace, not follow it)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def private_opener(path: str, flags: int) -> int:
    """An ``open(..., opener=)`` that creates files with mode 0600 and never follows a symlink."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
