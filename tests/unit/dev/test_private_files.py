"""Private directories and files, attacked the way another local user would: symlinks planted at
the target and at every temporary name that can be predicted, a loose umask, a shared directory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from airmlops_dev import private_files
from airmlops_dev.private_files import UnsafePathError, make_private_dir, write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common default umask (022): files 0644, directories 0755 unless asked otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def no_chmod(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail on any chmod: private things must be created private, not narrowed afterwards."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"chmod{args}: created open, then narrowed")

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file of the victim's that an attacker wants overwritten, outside the private dir."""
    victim = tmp_path / "victim" / "authorized_keys"
    victim.parent.mkdir()
    victim.write_text("original\n")
    return victim


def test_a_symlink_at_the_target_is_refused_and_nothing_outside_is_written(
    tmp_path: Path, outside: Path
) -> None:
    home = make_private_dir(tmp_path / "home")
    target = home / "secrets.env"
    target.symlink_to(outside)
    with pytest.raises(UnsafePathError, match=r"secrets\.env is a symlink"):
        write_private(target, "FERNET=attacker-wants-this\n")
    assert outside.read_text() == "original\n"
    assert target.is_symlink()
    assert sorted(p.name for p in home.iterdir()) == ["secrets.env"]  # no temp file left


def test_symlinks_at_predictable_temp_names_are_not_followed(tmp_path: Path, outside: Path) -> None:
    home = make_private_dir(tmp_path / "home")
    target = home / "secrets.env"
    # every name a fixed or pid-based temp scheme would use (this file's old ones included)
    planted = [
        home / "secrets.env.tmp",
        home / ".secrets.env.tmp",
        home / f".secrets.env.{os.getpid()}.tmp",
        home / f"secrets.env.{os.getpid()}.tmp",
    ]
    for link in planted:
        link.symlink_to(outside)
    write_private(target, "KEY=value\n")
    assert outside.read_text() == "original\n"
    assert target.read_text() == "KEY=value\n"
    assert not target.is_symlink()
    assert _mode(target) == 0o600
    assert all(link.is_symlink() for link in planted)  # others' files are left alone
    assert sorted(p.name for p in home.iterdir()) == sorted(
        [target.name] + [p.name for p in planted]
    )


def test_even_a_guessed_temp_name_is_not_followed(
    tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_EXCL|O_NOFOLLOW: an attacker who wins the guess makes the open fail, nothing more."""
    home = make_private_dir(tmp_path / "home")
    (home / ".secrets.env.guessed.tmp").symlink_to(outside)
    names = iter(["guessed", "fresh"])
    monkeypatch.setattr(private_files.secrets, "token_hex", lambda n: next(names))
    write_private(home / "secrets.env", "KEY=value\n")
    assert outside.read_text() == "original\n"
    assert (home / "secrets.env").read_text() == "KEY=value\n"

    monkeypatch.setattr(private_files.secrets, "token_hex", lambda n: "guessed")
    with pytest.raises(UnsafePathError, match="random names were taken"):
        write_private(home / "secrets.env", "KEY=other\n")
    assert outside.read_text() == "original\n"
    assert (home / "secrets.env").read_text() == "KEY=value\n"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_private_dir(tmp_path / "home")
    write_private(home / "secrets.env", "old\n")

    def crash(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_private(home / "secrets.env", "new\n")
    assert (home / "secrets.env").read_text() == "old\n"
    assert [p.name for p in home.iterdir()] == ["secrets.env"]


def test_directories_and_files_are_created_private_whatever_the_umask(
    tmp_path: Path, loose_umask: None, no_chmod: None
) -> None:
    deep = make_private_dir(tmp_path / "a" / "b" / "c")
    for level in (tmp_path / "a", tmp_path / "a" / "b", deep):
        assert _mode(level) == 0o700, level
    write_private(tmp_path / "new" / "env", "X=1\n")  # a missing parent is made private too
    assert _mode(tmp_path / "new") == 0o700
    assert _mode(tmp_path / "new" / "env") == 0o600


def test_an_existing_parent_is_left_alone(tmp_path: Path, loose_umask: None) -> None:
    shared = tmp_path / "project"
    shared.mkdir(mode=0o755)
    write_private(shared / ".env", "X=1\n")  # the compose .env next to docker-compose.yml
    assert _mode(shared) == 0o755
    assert _mode(shared / ".env") == 0o600


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "home"
    shared.mkdir()
    os.chmod(shared, 0o777)  # the attack: someone else could plant files here
    with pytest.raises(UnsafePathError, match=r"writable by other users \(mode 0o777\)"):
        make_private_dir(shared)
    assert _mode(shared) == 0o777  # not silently "fixed": its contents may be planted


def test_a_directory_a_shared_group_can_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "home"
    shared.mkdir()
    os.chmod(shared, 0o770)
    monkeypatch.setattr(private_files, "own_private_group", lambda gid: False)
    with pytest.raises(UnsafePathError, match=r"writable by other users \(mode 0o770\)"):
        make_private_dir(shared)


def test_a_directory_only_the_users_own_group_can_write_is_narrowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "home"  # an earlier version under umask 002 (user private groups)
    old.mkdir()
    os.chmod(old, 0o775)
    monkeypatch.setattr(private_files, "own_private_group", lambda gid: True)
    make_private_dir(old)
    assert _mode(old) == 0o700


def test_a_directory_others_can_only_read_is_narrowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = tmp_path / "home"  # made by an earlier version with the default umask
    old.mkdir()
    os.chmod(old, 0o755)
    with caplog.at_level("WARNING"):
        make_private_dir(old)
    assert _mode(old) == 0o700
    assert "was readable by other users" in caplog.text


def test_a_directory_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_private_dir(tmp_path / "home")
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(home).st_uid + 1)
    with pytest.raises(UnsafePathError, match="belongs to uid"):
        make_private_dir(home)


def test_a_umask_that_takes_the_owners_rights_is_reported(tmp_path: Path) -> None:
    old = os.umask(0o277)
    try:
        with pytest.raises(UnsafePathError, match="not 0o700"):
            make_private_dir(tmp_path / "home")
    finally:
        os.umask(old)


def test_the_private_opener_creates_0600_and_refuses_symlinks(
    tmp_path: Path, outside: Path, loose_umask: None
) -> None:
    log = tmp_path / "component.log"
    with open(log, "ab", opener=private_files.private_opener) as fh:
        fh.write(b"line\n")
    assert _mode(log) == 0o600
    link = tmp_path / "planted.log"
    link.symlink_to(outside)
    with (
        pytest.raises(OSError, match="Too many levels of symbolic links"),
        open(link, "ab", opener=private_files.private_opener),
    ):
        pass
    assert outside.read_text() == "original\n"


def test_own_private_group_is_only_the_users_own() -> None:
    import grp
    import pwd

    mine = grp.getgrgid(os.getegid())
    expected = mine.gr_name == pwd.getpwuid(os.geteuid()).pw_name
    assert private_files.own_private_group(os.getegid()) == expected
    assert not private_files.own_private_group(os.getegid() + 54321)
