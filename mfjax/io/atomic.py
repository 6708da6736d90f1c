"""Atomic writes: a file that is replaced whole or not at all.

:func:`atomic_write` writes through a temporary file in the target's folder,
syncs it and renames it onto the target, so that a reader sees the old file or
the new one, never a half-written one. It installs no signal handler: a
program that wants SIGTERM to clean up (as the ``mfjax`` command does) turns it
into an exception itself; what a killed writer leaves, the next write into the
folder removes once stale.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import time

__all__ = [
  "atomic_write",
  "check_target",
]


# Temporary files of save: a short fixed name, whatever the length of the user's,
# so that it always fits the file system's name limit. Ones older than
# _STALE_SECONDS were left by a save that was killed, and the next save into
# that directory removes them; a save in progress keeps its file fresh.
_TEMP_PREFIX, _TEMP_SUFFIX = ".mfjax-", ".tmp"
_TEMP_NAME = re.compile(r"\.mfjax-[0-9a-f]+\.tmp")


_STALE_SECONDS = 600


_NAME_MAX = 255  # Where os.pathconf cannot tell.


def _name_max(directory: str) -> int | None:
  """The longest file name (bytes) the directory's file system takes, if known."""
  try:
    limit = os.pathconf(directory, "PC_NAME_MAX")
  except (AttributeError, OSError, ValueError):  # Windows has no pathconf.
    return None
  return limit if limit > 0 else None


def _temp_file(directory: str, name_max: int) -> tuple[int, str]:
  # Not tempfile.mkstemp: its 0o600 mode would end up on the saved file; os.open
  # with 0o666 gets the permissions the user's umask gives any new file.
  flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
  digits = max(1, min(16, name_max - len(_TEMP_PREFIX) - len(_TEMP_SUFFIX)))
  for _ in range(100):
    token = secrets.token_hex(8)[:digits]
    temp = os.path.join(directory, _TEMP_PREFIX + token + _TEMP_SUFFIX)
    try:
      return os.open(temp, flags, 0o666), temp
    except FileExistsError:
      continue
  raise FileExistsError(f"could not create a temporary file in {directory}")


def _remove_stale_temp_files(directory: str) -> None:
  """Removes what killed saves left in ``directory``: mfjax temporary files only,
  and only old ones, so that a save in progress elsewhere keeps its file."""
  now = time.time()
  try:
    with os.scandir(directory) as found:
      for entry in found:
        if not _TEMP_NAME.fullmatch(entry.name):
          continue
        try:
          if (
            entry.is_file(follow_symlinks=False)
            and now - entry.stat(follow_symlinks=False).st_mtime > _STALE_SECONDS
          ):
            os.unlink(entry.path)
        except OSError:
          continue  # Gone already (another save cleaned up), or not ours to remove.
  except OSError:
    pass  # Cleaning up is a courtesy; the save itself reports real problems.


def _naming(error: OSError, path: str) -> OSError:
  """``error`` as the same type of OSError, naming the user's ``path`` rather than
  the temporary file (``filename`` and ``strerror`` are set for callers that
  print them, where the error has an errno)."""
  try:
    if error.errno is not None:
      return type(error)(error.errno, error.strerror or str(error), path)
    return type(error)(f"{path}: {error}")
  except TypeError:  # An OSError subclass with another signature.
    return OSError(f"{path}: {error}")


def _fsync_directory(directory: str) -> None:
  if not hasattr(os, "O_DIRECTORY"):
    return  # Windows: directories cannot be opened; os.replace is what it offers.
  try:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass  # Some file systems do not sync directories; the rename still happened.
  finally:
    os.close(fd)


def check_target(path: str | os.PathLike) -> None:
  """Refuses a path :func:`atomic_write` cannot replace whole, before any work.

  Raises:
    FileNotFoundError: the directory of ``path`` does not exist.
    ValueError: ``path`` is a directory, ends in a separator, or names
      something other than a regular file (a device, a FIFO, a socket): a
      rename onto it would put a regular file in its place.
    OSError: a name longer than the file system allows.
  """
  _checked_target(os.fspath(path))


def _checked_target(path: str) -> tuple[str, int | None]:
  """``(directory, longest name)`` of a path :func:`check_target` accepts."""
  import stat

  if not path:
    raise ValueError("path must name a file; it is empty.")
  if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
    raise ValueError(f"path must name a file; {path} ends in a separator.")
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise FileNotFoundError(errno.ENOENT, f"directory {directory} does not exist", path)
  if os.path.isdir(path):
    raise ValueError(f"path must name a file; {path} is a directory.")
  try:
    mode = os.stat(path).st_mode
  except OSError:
    mode = None  # A new name (or a dangling link, which the rename replaces).
  if mode is not None and not stat.S_ISREG(mode):
    raise ValueError(
      f"{path} is not a regular file (a device, FIFO or socket); mfjax writes "
      "only regular files, and would replace it by one."
    )
  name_max = _name_max(directory)
  if name_max and len(os.fsencode(os.path.basename(path))) > name_max:
    raise OSError(errno.ENAMETOOLONG, f"file name longer than {name_max} bytes", path)
  return directory, name_max


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, text: bool = False):
  """A file to write ``path`` through, atomically: what :func:`save` uses.

  Yields a file open on a temporary file in ``path``'s directory (binary, or
  UTF-8 text with ``text``); when the ``with`` block ends it is synced and
  renamed onto ``path``, so a reader sees the old file or the new one, never a
  half-written one. An exception in the block (``KeyboardInterrupt`` included)
  removes the temporary file and leaves ``path`` as it was;
  temporary files that killed writers left are removed once stale (over 10
  minutes untouched). An ``OSError`` of the writing names ``path``, never the
  temporary file.

  Raises:
    FileNotFoundError: the directory of ``path`` does not exist.
    ValueError: ``path`` is a directory, ends in a separator, or names
      something other than a regular file (a device, a FIFO, a socket).
    OSError: a name longer than the file system allows; writing failed.
  """
  path = os.fspath(path)
  directory, name_max = _checked_target(path)
  _remove_stale_temp_files(directory)
  try:
    fd, temp = _temp_file(directory, name_max or _NAME_MAX)
  except OSError as e:
    raise _naming(e, path) from None
  try:
    opened = (
      os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb")
    )
    with opened as file:
      yield file
      file.flush()
      os.fsync(file.fileno())
    os.replace(temp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.unlink(temp)
    # Errors of the temporary file name the user's path; others (a file the
    # block read, say) stay as they are.
    if isinstance(e, OSError) and e.filename in (None, temp):
      raise _naming(e, path) from None
    raise
  _fsync_directory(directory)
