"""mfjax.distributed.logfilter: JAX's runtime log held back, one line instead."""

import ast
import os
import subprocess
import sys

import pytest

from mfjax.distributed import logfilter

FATAL = (
  b"F1208 03:10:45.362310   17384 client.cc:77] Terminating process because the "
  b"JAX distributed service detected fatal errors. This most likely indicates "
  b"that another task died\n"
)
TRACE = b"*** Check failure stack trace: ***\n    @     0x7f3a2b1c4d5e  absl::log\n"
GLOO = b"[Gloo] Rank 1 is connected to 1 peer ranks. Expected number of connected\n"


def _filtered(chunks, label="mfjax fit: error: process 1"):
  """What the filter writes for ``chunks`` read in turn: the writes, and for
  each one how many chunks had been read before it."""
  chunks, writes, seen = list(chunks), [], [0]

  def read():
    seen[0] += 1
    return chunks.pop(0) if chunks else b""

  logfilter.run(read, lambda data: writes.append((data, seen[0])), label)
  return writes


def _text(writes):
  return b"".join(data for data, _ in writes).decode()


def test_the_runtimes_abort_is_one_line_in_mfjaxs_words():
  text = _text(_filtered([b"mfjax: fitting\n", GLOO, FATAL, TRACE]))
  lines = text.splitlines()
  assert lines[0] == "mfjax: fitting"
  assert lines[1] == (
    "mfjax fit: error: process 1: JAX's runtime ended it: Terminating process "
    "because the JAX distributed service detected fatal errors. This most likely "
    "indicates that another task died (4 lines of its log held back; "
    "MFJAX_LAUNCH_RAW_LOG=1 shows them)"
  )
  assert len(lines) == 2 and "0x7f3a" not in text and "Gloo" not in text


def test_a_runtime_line_cut_between_reads_is_still_held_back():
  whole = b"".join([FATAL, TRACE])
  for cut in (1, 5, 20, len(FATAL) - 1, len(FATAL) + 3):
    text = _text(_filtered([whole[:cut], whole[cut:]]))
    assert "Check failure" not in text and "0x7f3a" not in text, cut
    assert text.count("JAX's runtime ended it: Terminating process") == 1, cut


def test_a_progress_bar_is_forwarded_as_it_is_drawn():
  chunks = [b"\rmfjax train:  10%|#", b"\rmfjax train:  20%|##", b"\n", b"done\n"]
  writes = _filtered(chunks)
  assert _text(writes) == "".join(c.decode() for c in chunks)
  # Each part of the bar went out before the next read, not a line later.
  drawn = [seen for data, seen in writes if b"%" in data]
  assert drawn == [1, 2], writes


def test_mfjaxs_own_error_line_is_the_only_one():
  error = b"mfjax fit: error: process 0 stopped: another process failed\n"
  for chunks in ([error, FATAL, TRACE], [error[:9], error[9:], FATAL]):
    text = _text(_filtered(chunks))
    assert text.splitlines() == [error.decode().strip()], chunks


def test_the_lines_of_a_runtime_record_read_together_are_held_back_with_it():
  record = FATAL.rstrip(b"\n") + (
    b": INTERNAL: Polled an error 1\nThe tasks have crashed.\n\nRPC: /xla.Poll\n"
  )
  for chunks in ([record], [record + b"\rmfjax train:  1%"], [record, b"later\n"]):
    text = _text(_filtered(chunks))
    assert "crashed" not in text and "RPC" not in text, chunks
    assert ("mfjax train:  1%" in text) == (b"train" in chunks[-1]), chunks
    assert ("later" in text) == (b"later" in chunks[-1]), chunks  # Another write.
    assert (
      text.strip()
      .splitlines()[-1]
      .endswith("(4 lines of its log held back; MFJAX_LAUNCH_RAW_LOG=1 shows them)")
    ), chunks


def test_lines_read_with_an_error_record_come_out_when_nothing_was_fatal():
  error = b"E1208 03:10:45.362310   17384 gloo.cc:12] a connection closed\n"
  warning = b"/x/y.py:3: UserWarning: something\n"
  assert _text(_filtered([error + warning, b"ok\n"])) == "ok\n" + warning.decode()
  # With a fatal record, they are part of the runtime's log held back.
  text = _text(_filtered([error + warning, FATAL]))
  assert "UserWarning" not in text and "(3 lines of its log held back" in text


def test_mfjaxs_error_quoting_a_log_line_passes_whole_and_is_the_only_line():
  error = b"mfjax fit: error: t.tsv:3: bad line 'E1207 19:00:45.361 17384 f.cc:1] x'\n"
  text = _text(_filtered([error, FATAL, TRACE]))
  assert text == error.decode()


def test_the_one_line_quotes_the_fatal_line_after_error_lines():
  errors = [b"E1208 03:10:4%d.0 17384 c.cc:1] error %d\n" % (k, k) for k in range(3)]
  text = _text(_filtered([*errors, FATAL, TRACE]))
  assert "JAX's runtime ended it: Terminating process because" in text, text


def test_the_log_of_a_runtime_before_its_clock_is_set_is_held_back():
  early = b"E0000 00:00:1733501234.567890   17384 init.cc:12] could not reach it\n"
  fatal = FATAL.replace(b"F1208 03:10:45.362310", b"F0000 00:00:1733501234.567890")
  text = _text(_filtered([early, fatal, TRACE]))
  assert text.startswith("mfjax fit: error: process 1: JAX's runtime ended it: T")
  assert "could not reach" not in text and "(4 lines" in text


def test_the_last_line_without_its_line_end_is_taken_as_any_other():
  error = b"E1208 03:10:45.362310   17384 gloo.cc:12] a connection closed\n"
  # Read with a non-fatal record: held, then written out (it was lost).
  assert _text(_filtered([error + b"a last word"])) == "a last word"
  # The runtime's: held, and fatal (no line was written for it).
  lines = _text(_filtered([b"ok\n", TRACE.split(b"\n")[0]])).splitlines()
  assert lines == [
    "ok",
    "mfjax fit: error: process 1: JAX's runtime ended it: *** Check failure stack "
    "trace: *** (1 lines of its log held back; MFJAX_LAUNCH_RAW_LOG=1 shows them)",
  ]


def test_a_log_without_a_fatal_line_adds_nothing():
  error_line = b"E1208 03:10:45.362310   17384 gloo.cc:12] a connection closed\n"
  assert _text(_filtered([GLOO, error_line, b"ok\n"])) == "ok\n"


def test_after_a_bar_with_no_line_end_the_line_starts_a_new_line():
  bar = b"\rmfjax train:  30%|###"
  # (A runtime line read in one piece with the bar's start is not told apart.)
  for chunks in (
    [bar, FATAL],
    [bar, FATAL[:3], FATAL[3:]],
    [bar, FATAL[:1], FATAL[1:]],
  ):
    text = _text(_filtered(chunks))
    assert text.startswith(bar.decode() + "\nmfjax fit: error: process 1:"), chunks
    assert "F1208" not in text, chunks


def _script(tmp_path, body, until_exit="bool"):
  script = tmp_path / "filtered.py"
  script.write_text(
    "import os, sys\n"
    "from mfjax.distributed import logfilter\n"
    f"with logfilter.held_back('mfjax fit: error: process 0', {until_exit}):\n"
    "  print('mfjax: before', file=sys.stderr, flush=True)\n"
    f"  os.write(2, {FATAL + TRACE!r})\n" + body
  )
  return [sys.executable, str(script)]


@pytest.mark.slow  # Two processes importing mfjax; the killed-process test too.
def test_the_filter_outlives_an_abort_of_the_process_it_filters(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != logfilter.RAW_LOG_ENV}
  argv = _script(tmp_path, "  os.abort()\n")
  done = subprocess.run(argv, env=env, capture_output=True, timeout=60)
  assert done.returncode == -6  # SIGABRT, as JAX's abort ends it.
  lines = done.stderr.decode().splitlines()
  assert lines[0] == "mfjax: before"
  assert lines[1].startswith("mfjax fit: error: process 0: JAX's runtime ended it: ")
  assert len(lines) == 2, lines
  # With the variable set, the log is left as it comes.
  env[logfilter.RAW_LOG_ENV] = "1"
  raw = subprocess.run(argv, env=env, capture_output=True, timeout=60)
  assert b"Check failure stack trace" in raw.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_stderr_is_put_back_and_the_filter_done_at_the_end_of_the_block(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != logfilter.RAW_LOG_ENV}
  argv = _script(
    tmp_path, "os.write(2, b'after\\n')\nprint(os.listdir('/proc/self/fd'))\n"
  )
  done = subprocess.run(argv, env=env, capture_output=True, timeout=60)
  assert done.returncode == 0, done.stderr
  lines = done.stderr.decode().splitlines()
  assert lines[0] == "mfjax: before" and lines[2] == "after", lines
  assert lines[1].startswith("mfjax fit: error: process 0: JAX's runtime ended it: ")
  assert sorted(ast.literal_eval(done.stdout.decode())) == [
    "0",
    "1",
    "2",
    "3",
  ]  # No fd left.


def test_the_filter_stays_to_the_end_of_a_process_whose_runtime_shuts_down_at_exit(
  tmp_path,
):
  # JAX's runtime shuts down at exit, after mfjax's last line, and may abort
  # there: until_exit keeps the filter in front of stderr to the end.
  env = {k: v for k, v in os.environ.items() if k != logfilter.RAW_LOG_ENV}
  body = "  pass\nprint('mfjax fit: done', file=sys.stderr, flush=True)\n"
  body += f"os.write(2, {TRACE!r})\nos.abort()\n"
  argv = _script(tmp_path, body, until_exit="lambda: True")
  done = subprocess.run(argv, env=env, capture_output=True, timeout=60)
  assert done.returncode == -6
  lines = done.stderr.decode().splitlines()
  assert lines[:2] == ["mfjax: before", "mfjax fit: done"], lines
  assert lines[2].startswith("mfjax fit: error: process 0: JAX's runtime ended it: ")
  assert len(lines) == 3 and "0x7f3a" not in done.stderr.decode(), lines
