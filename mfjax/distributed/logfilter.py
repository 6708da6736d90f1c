"""Holds back JAX's C++ runtime log on a joined process's stderr; one line instead.

A process of a joined fit whose peer dies is often ended by JAX's coordination
service: an abort (exit 134) with ``Terminating process because the JAX
distributed service detected fatal errors`` and some thirty lines of C++ stack
trace. ``mfjax launch`` holds these back in its own forwarding (gloo's
connection lines too); a process started by hand (``--coordinator``)
passes its stderr through this filter instead (:func:`held_back`), which runs as
a script in a child process, so that it outlives an abort of the process it
filters: it forwards every other line as it comes (progress bars included),
holds back the runtime's lines, and at the end, when the runtime ended the
process and mfjax had not said why, writes one line in mfjax's words.

This module imports only the standard library: the filter starts in a few
milliseconds and never imports JAX.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator

__all__ = [
  "RAW_LOG_ENV",
  "RUNTIME_LOG",
  "held_back",
  "last_words",
  "log_text",
  "said_an_error",
  "run",
]

RAW_LOG_ENV = "MFJAX_LAUNCH_RAW_LOG"
"""Set to 1, JAX's runtime log is shown as it comes, by ``mfjax launch`` and by
the filter of a process started by hand; by default it is held back and one
line says why a process ended."""

# An absl log line's prefix ("E1207 19:00:45.361 17384 file.cc:159] ", or
# before absl's clock is set "E0000 00:00:1733501234.567 17384 file.cc:159] ").
_ABSL = r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]"
# Lines of JAX's C++ runtime: absl log lines, their stack traces and gRPC
# details, gloo's connections.
RUNTIME_LOG = re.compile(
  _ABSL + r"|\*\*\* Check failure stack trace"
  r"|\s+@\s+0x[0-9a-f]+"
  r"|Additional GRPC error information"
  r"|:UNKNOWN:Error received from peer"
  r"|terminate called after throwing"
  r"|\s+what\(\):"
  r"|\[Gloo\] "
)

_FATAL = re.compile(r"F\d{4} \d|\*\*\* Check failure|terminate called")
_LEVEL = re.compile(r"([EF])\d{4} \d")


def _level(line: str) -> str | None:
  """``"E"`` or ``"F"`` for an absl error or fatal line, else None."""
  level = _LEVEL.match(line)
  return level and level[1]


def log_text(line: str) -> str:
  """An absl log line without its prefix (level, time, thread, file)."""
  return line.split("] ", 1)[1] if "] " in line[:80] else line


def said_an_error(line: str) -> bool:
  """Whether ``line`` is mfjax's own one-line error (``mfjax fit: error: ...``)."""
  return line.startswith("mfjax") and ": error: " in line


def last_words(held: list[str]) -> str:
  """What the runtime said when it ended the process: its first fatal line,
  else its first error line, without the absl prefix (at most 160 characters)."""
  first = next((x for x in held if _level(x) == "F"), None)
  first = first or next((x for x in held if _level(x) == "E"), held[0])
  text = log_text(first).strip()
  return text if len(text) <= 160 else text[:157].rstrip() + "..."


@contextlib.contextmanager
def held_back(label: str, until_exit: Callable[[], bool] = bool) -> Iterator[None]:
  """Passes this process's stderr (file descriptor 2) through the filter
  meanwhile; puts it back at the end, where the filter ends too, unless
  ``until_exit()`` is then true: the filter then stays until this process ends
  (a runtime that shuts down at exit, and may abort there).

  The filter is a child process in its own session (a terminal's Ctrl-C goes
  to this process only), reading a pipe until every writer has closed it: at
  the end of the block, or when this process ends, however it ends (an abort
  included). Nothing changes when :data:`RAW_LOG_ENV` is 1, off POSIX, or
  where no file descriptors or processes can be made. ``label`` starts the
  filter's own line, e.g. ``"mfjax fit: error: process 1"``.
  """
  raw = os.environ.get(RAW_LOG_ENV) == "1" or os.name != "posix"
  filter_ = None if raw else _start(label)
  if filter_ is None:
    yield
    return
  child, saved = filter_
  try:
    yield
  finally:
    if until_exit():
      _KEPT.append(child)  # Ends with this process; its pipe closes then.
      os.close(saved)
    else:
      sys.stderr.flush()
      os.dup2(saved, 2)  # The pipe's last writer closes: the filter reads its end.
      os.close(saved)
      try:
        child.wait(timeout=10)
      except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


_KEPT: list = []


def _start(label: str) -> tuple[subprocess.Popen, int] | None:
  """The filter's process and a copy of the stderr it writes to; file
  descriptor 2 now writes to the filter. None where that could not be done."""
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:
    return None
  try:
    read, write = os.pipe()
  except OSError:
    os.close(saved)
    return None
  try:
    child = subprocess.Popen(
      [sys.executable, "-S", "-I", os.path.abspath(__file__), label],
      stdin=read,
      stdout=saved,  # The process's stderr as it was,
      stderr=saved,  # and the filter's own, should it fail.
      start_new_session=True,
    )
  except OSError:
    os.close(saved)
    os.close(write)
    return None
  finally:
    os.close(read)
  os.dup2(write, 2)
  os.close(write)
  return child, saved


# A line's start that may begin one of the runtime's lines: held until the line
# is whole. Any other start is forwarded at once (a progress bar's "\rmfjax
# train: 40%|...", drawn before its line ends).
_MAY_BE_RUNTIME = tuple(b"IWEF*[:At \t")
_RUNTIME_LOG = re.compile(RUNTIME_LOG.pattern.encode())
# Where the runtime's thread starts a line after the start of a progress bar.
_WITHIN = re.compile(_ABSL.encode() + rb"|\*\*\* Check fail")
# Lines that are mfjax's own, after the start of a runtime error's record in
# the same read: its message may span lines ("... INTERNAL: ...", "The tasks
# have crashed ...", "RPC: ..."), all of them held back.
_OURS = (b"mfjax", b"\r", b"Traceback")
_KEEP_LINES = 1000  # Lines taken for a record's, written out if none was fatal.


def run(read, write, label: str) -> None:
  """Forwards what ``read()`` gives (bytes; ``b""`` at the end) to ``write``
  line by line, a line ending in ``\n`` or ``\r``; holds back the runtime's
  lines (and the lines that continue its error records); then the one line,
  where the runtime ended the process. Lines taken for a record's are written
  at the end when nothing was fatal (a Python warning read with a record)."""
  pending, passed, last, record = b"", b"", b"\n", False
  said, fatal, n_held, shown, continued = False, False, 0, [], []

  def forward(data: bytes) -> None:
    nonlocal last
    write(data)
    last = data

  def hold(text: str) -> None:
    nonlocal n_held, fatal
    fatal = fatal or bool(_FATAL.match(text))
    level = _level(text)  # For last_words: the first line, error and fatal.
    if not n_held or (level and level not in map(_level, shown)):
      shown.append(text)
    n_held += 1

  def take(line: bytes) -> None:
    """One line (its start already forwarded, where ``passed`` holds it)."""
    nonlocal passed, record, said
    started, passed = passed, b""
    found = _RUNTIME_LOG.match(line) or _WITHIN.search(line)
    if found and said_an_error(
      (started + line[: found.start()]).decode("ascii", "replace")
    ):
      found = None  # mfjax's own error line, quoting a log line.
    if found:
      # Whole, or written by the runtime's thread after a bar's start: that
      # line then stays open, and the next bar (or the last line) starts anew.
      if found.start():
        forward(line[: found.start()])
      hold(line[found.start() :].decode(errors="replace").rstrip("\r\n"))
      record = line[found.start() : found.start() + 1] in (b"E", b"F") or (
        record and not found.start()
      )
    elif record and not line.startswith(_OURS):
      hold(line.decode(errors="replace").rstrip("\r\n"))
      if len(continued) < _KEEP_LINES:
        continued.append(line)
    else:
      record = False
      said = said or said_an_error((started + line).decode(errors="replace"))
      forward(line)

  while chunk := read():
    *lines, pending = re.split(rb"(?<=[\r\n])", pending + chunk)
    record = False  # A record is one write: its lines come in one read.
    for line in lines:
      take(line)
    if pending and pending[0] not in _MAY_BE_RUNTIME:
      forward(pending)  # The start of a line that is not the runtime's.
      passed, pending = passed + pending, b""
  if pending:  # The last line, without its line end.
    take(pending)
  if not fatal:
    for line in continued:
      forward(line)
  if said or not fatal:
    return
  write(
    (b"" if last.endswith(b"\n") else b"\n")  # After a progress bar, a new line.
    + f"{label}: JAX's runtime ended it: {last_words(shown)} ({n_held} "
    f"lines of its log held back; {RAW_LOG_ENV}=1 shows them)\n".encode()
  )


def _copy(read, write) -> None:
  while data := read():
    write(data)


def main(argv: list[str]) -> None:
  label = argv[1] if len(argv) > 1 else "mfjax: error"

  def write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()

  read = lambda: os.read(0, 65536)
  try:
    run(read, write, label)
  except (BrokenPipeError, KeyboardInterrupt):  # Nowhere left to write to.
    pass
  except Exception:  # A bug of this filter must not cost the process its stderr.
    import traceback

    traceback.print_exc()
    with contextlib.suppress(OSError, KeyboardInterrupt):
      _copy(read, write)


if __name__ == "__main__":
  main(sys.argv)
