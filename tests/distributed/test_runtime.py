"""mfjax.distributed and the CLI's multi-process options: checks, and real runs.

The checks run in this process (nothing is joined: every bad argument is refused
before jax.distributed starts). The slow tests start real processes, joined
with gloo on a free local port, each reading its own part of the files: two
processes of two CPU devices each fit as one process of four devices and as one
of one device (test RMSE and saved params), mfjax.train over two processes
gives one process's losses and params, processes that disagree (options, files)
all stop with one line and exit 2, and a killed process stops the other.
"""

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mfjax
from mfjax import cli, distributed

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
  "text", ["localhost", ":80", "host:0", "host:65536", "host:port", "host:-1"]
)
def test_check_coordinator_refuses_bad_addresses(text):
  with pytest.raises(ValueError, match="HOST:PORT"):
    distributed.check_coordinator(text)


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(coordinator="h:1", num_processes=2), ValueError, "together"),
    (dict(coordinator="h:1", num_processes=2, process_id=2), ValueError, r"\[0, 2\)"),
    (dict(coordinator="h:1", num_processes=2, process_id=-1), ValueError, r"\[0, 2\)"),
    (dict(coordinator="h:1", num_processes=0, process_id=0), ValueError, ">= 1"),
    (dict(coordinator="h:1", num_processes=2, process_id=1.0), TypeError, "int"),
    (dict(coordinator="h", num_processes=2, process_id=0), ValueError, "HOST:PORT"),
    (dict(auto=True, process_id=0), ValueError, "leave out"),
    (
      dict(coordinator="h:1", num_processes=1, process_id=0, timeout=0),
      ValueError,
      "timeout",
    ),
  ],
)
def test_initialize_refuses_bad_arguments_before_joining(kwargs, error, match):
  with pytest.raises(error, match=match):
    distributed.initialize(**kwargs)


@pytest.mark.parametrize(
  "argv, message",
  [
    (["fit", "f.tsv", "--coordinator", "h:1"], "together"),
    (["fit", "f.tsv", "--distributed", "auto", "--process-id", "0"], "leave out"),
    (["launch", "-n", "2"], "after --"),
    (["launch", "-n", "2", "--", "cv", "f.tsv"], "only fit"),
    (["launch", "-n", "2", "--", "fit", "f.tsv", "--process-id", "1"], "leave it out"),
    (["launch", "-n", "0", "--", "fit", "f.tsv"], ">= 1"),
  ],
)
def test_cli_refuses_bad_distributed_options_in_one_line(argv, message, capsys):
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_an_unreachable_coordinator_is_one_line_after_the_timeout(tmp_path, capsys):
  port = distributed.free_port()  # Nobody serves there.
  start = time.monotonic()
  with pytest.raises(distributed.DistributedError, match="could not reach"):
    distributed.initialize(f"127.0.0.1:{port}", 2, 1, timeout=1)
  assert 1 <= time.monotonic() - start < 10
  train = _write(tmp_path / "t.tsv", 100, 0)
  argv = ["fit", train, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
  assert cli.main([*argv, "--process-id", "1", "--process-timeout", "1"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "could not reach the coordinator" in err, err


def test_process_0_alone_says_who_did_not_join(tmp_path, capsys):
  train = _write(tmp_path / "t.tsv", 100, 0)
  port = distributed.free_port()
  argv = ["fit", train, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "3"]
  start = time.monotonic()
  assert cli.main([*argv, "--process-id", "0", "--process-timeout", "1"]) == 2
  assert time.monotonic() - start < 10
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "process 1, 2 of 3 did not join within 1 s" in err


def test_a_coordinator_port_in_use_is_refused_in_one_line():
  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    with pytest.raises(distributed.DistributedError, match="cannot serve"):
      distributed.initialize(f"127.0.0.1:{port}", 2, 0, timeout=1)


def _send_until_accepted(port, line, tries=200):
  """Connects to 127.0.0.1:port (retrying while nobody listens), sends line."""
  for _ in range(tries):
    try:
      with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        conn.sendall(line)
        conn.recv(64)  # Until process 0 answers or closes.
        return
    except OSError:
      time.sleep(0.02)


@pytest.mark.slow
def test_a_spoofed_join_without_the_runs_token_is_ignored(monkeypatch):
  # Issue 31: the rendezvous accepted a spoofed join. With the run's token
  # (launch sets one), a join without it is not one of the run's processes.
  monkeypatch.setenv(distributed.JOIN_TOKEN_ENV, "secret-of-this-run")
  port = distributed.free_port()
  spoof = threading.Thread(target=_send_until_accepted, args=(port, b"mfjax 1 2\n"))
  spoof.start()
  try:
    with pytest.raises(
      distributed.DistributedError, match="process 1 of 2 did not join"
    ):
      distributed.initialize(f"127.0.0.1:{port}", 2, 0, timeout=2)
  finally:
    spoof.join()


def test_a_join_with_another_token_is_told_so(monkeypatch):
  monkeypatch.setenv(distributed.JOIN_TOKEN_ENV, "this-run")
  port = distributed.free_port()
  replies = []

  def join_with_another_token():
    for _ in range(200):
      try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
          conn.sendall(b"mfjax 1 2 another-run\n")
          replies.append(conn.recv(1024).decode())
          return
      except OSError:
        time.sleep(0.02)

  thread = threading.Thread(target=join_with_another_token)
  thread.start()
  try:
    with pytest.raises(distributed.DistributedError, match="did not join"):
      distributed.initialize(f"127.0.0.1:{port}", 2, 0, timeout=2)
  finally:
    thread.join()
  assert replies and replies[0].startswith("error process 0 and this process were")


@pytest.mark.parametrize(
  "reply", [b"HTTP/1.1 400 Bad Request\r\n\r\n<html>", b"\x00\x00\x12\x04\x00"]
)
def test_a_foreign_service_on_the_coordinators_port_is_named_not_echoed(reply):
  # Issue 31: a web or gRPC server's reply was printed as the error text.
  server = socket.create_server(("127.0.0.1", 0))
  port = server.getsockname()[1]

  def answer():
    conn, _ = server.accept()
    with conn:
      conn.recv(1024)
      conn.sendall(reply + b"\n")

  thread = threading.Thread(target=answer)
  thread.start()
  try:
    with pytest.raises(distributed.DistributedError) as raised:
      distributed.initialize(f"127.0.0.1:{port}", 2, 1, timeout=5)
  finally:
    thread.join()
    server.close()
  message = str(raised.value)
  assert "answered as no mfjax process 0" in message
  assert "HTTP" not in message and "\x00" not in message


def _write(path, n, seed):
  rng = np.random.default_rng(seed)
  rows = np.c_[rng.integers(1, 200, n), rng.integers(1, 150, n), rng.integers(1, 6, n)]
  np.savetxt(path, rows, fmt="%d", delimiter="\t")
  return str(path)


def _report(lines: str) -> dict:
  """The JSON object in the output (prefixed ``[0] `` by launch)."""
  for line in lines.splitlines():
    text = line.removeprefix("[0] ")
    if text.startswith("{"):
      return json.loads(text)
  raise AssertionError(lines[-2000:])


def _write_csv(path, n, seed):
  """A ratings.csv with a header, text ids and pairs rated twice (far apart)."""
  rng = np.random.default_rng(seed)
  rows = [f"u{u},m{i},{r}" for u, i, r in zip(
    rng.integers(1, 200, n), rng.integers(1, 150, n), rng.integers(1, 6, n),
    strict=True,
  )]  # fmt: skip
  rows += rows[: n // 20]  # Rated again at the end: a duplicate across parts.
  path.write_text("userId,movieId,rating\n" + "\n".join(rows) + "\n")
  return str(path)


ENV = {"MFJAX_COMPILATION_CACHE": "0", "PATH": "/usr/bin:/bin"}


def _mfjax(*argv, devices=None):
  env = dict(ENV)
  if devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return subprocess.run(
    [sys.executable, "-m", "mfjax", *argv],
    capture_output=True, text=True, timeout=300, env=env,
  )  # fmt: skip


@pytest.mark.slow  # Four runs compile the fit: about 40 s on 2 cores.
def test_two_processes_of_two_devices_fit_as_one_process(tmp_path):
  train = _write_csv(tmp_path / "t.csv", 6000, 0)
  test = _write_csv(tmp_path / "s.csv", 1000, 1)
  fit = ["fit", train, "--test", test, "--json", "--steps", "4", "--ensemble", "2"]
  runs = {
    "2x2": ("launch", "-n", "2", "--devices", "2", "--"),
    "1x4": ("launch", "-n", "1", "--devices", "4", "--"),
    "1x1": (),
  }
  reports, params = {}, {}
  for name, launcher in runs.items():
    saved = str(tmp_path / f"{name}.npz")
    done = _mfjax(*launcher, *fit, "--save", saved)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    if name == "2x2":  # Only process 0 reports.
      assert "[1] {" not in done.stdout
    reports[name] = _report(done.stdout)
    params[name] = mfjax.load(saved).params
  alone = reports["1x1"]
  assert alone["n_duplicates"] >= 300  # The 300 repeated lines, and chance pairs.
  assert alone["n_train"] == 6300 - alone["n_duplicates"]
  for name in ("2x2", "1x4"):
    for field in ("n_train", "n_test", "n_duplicates", "n_users", "n_items"):
      assert reports[name][field] == alone[field], (name, field)
    for field in ("test_rmse", "train_rmse"):
      np.testing.assert_allclose(reports[name][field], alone[field], atol=1e-4)
    for got, want in zip(params[name], params["1x1"], strict=True):
      np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)


@pytest.mark.slow  # Two ranking fits compile: about 20 s.
def test_the_ranking_fit_over_two_processes_equals_one_process(tmp_path):
  train = _write_csv(tmp_path / "t.csv", 6000, 3)
  test = _write_csv(tmp_path / "s.csv", 2000, 4)
  fit = ["fit", train, "--test", test, "--json", "--objective", "ranking"]
  fit += ["--steps", "3"]
  joined = _mfjax("launch", "-n", "2", "--devices", "2", "--", *fit)
  alone = _mfjax(*fit)
  for done in (joined, alone):
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  together, one = _report(joined.stdout), _report(alone.stdout)
  assert one["n_users_ranked"] > 50
  for name in ("test_ndcg_at_10", "test_precision_at_10", "n_users_ranked"):
    np.testing.assert_allclose(together[name], one[name], atol=1e-4, err_msg=name)


def _train(tmp_path, name, train, *options, processes=1, devices=1):
  """benchmarks/train_processes.py in ``processes`` joined processes."""
  out = str(tmp_path / f"{name}.npz")
  argv = [sys.executable, str(ROOT / "benchmarks" / "train_processes.py"), train]
  argv += ["--out", out, "--steps", "15", *options]
  env = dict(ENV, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  if processes > 1:
    port = distributed.free_port()
    argv += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes)]
  children = [
    subprocess.Popen(
      argv + (["--process-id", str(i)] if processes > 1 else []),
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )  # fmt: skip
    for i in range(processes)
  ]
  outputs = [child.communicate(timeout=300)[0] for child in children]
  for child, output in zip(children, outputs, strict=True):
    assert child.returncode == 0, output[-3000:]
  return dict(np.load(out))


@pytest.mark.slow  # Four runs of mfjax.train: about 20 s.
@pytest.mark.parametrize("options", [(), ("--batch-size", "1000")])
def test_train_over_two_processes_equals_one_process(tmp_path, options):
  train = _write_csv(tmp_path / "t.csv", 6000, 2)
  alone = _train(tmp_path, "one", train, *options)
  joined = _train(tmp_path, "two", train, *options, processes=2, devices=2)
  assert joined["processes"] == 2 and joined["devices"] == 4
  assert joined["n_ratings"] == alone["n_ratings"] < 6300
  np.testing.assert_allclose(joined["losses"], alone["losses"], rtol=1e-5)
  assert joined["losses"][-1] < 0.95 * joined["losses"][0]  # It trained.
  for name in alone:
    if name.startswith("params_"):
      np.testing.assert_allclose(joined[name], alone[name], atol=1e-5, err_msg=name)


def _two_processes(commands):
  """Exit codes and stderr of two joined processes, each with its command."""
  port = distributed.free_port()
  children = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "mfjax",
        *command,
        "--coordinator",
        f"127.0.0.1:{port}",
        "--process-id",
        str(i),
      ],
      env=ENV,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
    )  # fmt: skip
    for i, command in enumerate(commands)
  ]
  errors = [c.communicate(timeout=120)[1] for c in children]
  return [(c.returncode, err) for c, err in zip(children, errors, strict=True)]


@pytest.mark.slow  # Two processes join and part: about 5 s a case.
@pytest.mark.parametrize(
  "train, test, extra, message",
  [
    ("t.csv", "s.csv", ["--num-processes", "3"], "started with --num-processes"),
    ("t.csv", "s.csv", ["--rank", "5"], "started with --rank"),
    ("t.csv", "s.csv", ["--seed", "3"], "started with --seed"),
    ("t.csv", "missing.csv", [], "missing.csv: no such file."),
    ("other.csv", "s.csv", [], "read different files"),
  ],
)
def test_processes_that_disagree_all_stop_with_one_line(
  tmp_path, train, test, extra, message
):
  """Process 1 is given ``train``, ``test`` and ``extra``; process 0 the files
  t.csv and s.csv, which process 1 gets too unless told otherwise."""
  for name, n, seed in (("t.csv", 600, 0), ("other.csv", 500, 1), ("s.csv", 100, 2)):
    _write_csv(tmp_path / name, n, seed)
  command = lambda train, test: [
    "fit", str(tmp_path / train), "--test", str(tmp_path / test),
    "--steps", "2", "--num-processes", "2", "--scale", "1,5",
  ]  # fmt: skip
  results = _two_processes([command("t.csv", "s.csv"), command(train, test) + extra])
  for code, err in results:
    assert code == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err[-2000:]
    assert lines[0].startswith("mfjax fit: error: ")


KILLED_TIMEOUT = 20  # Seconds: the heartbeat of the killed-process test.


@pytest.mark.slow  # About 15 s: two processes compile, one is killed mid-fit.
def test_a_killed_process_stops_the_other_with_an_error(tmp_path):
  train, test = _write(tmp_path / "t.tsv", 6000, 0), _write(tmp_path / "s.tsv", 1000, 1)
  port = distributed.free_port()
  env = dict(ENV, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  fit = [sys.executable, "-m", "mfjax", "fit", train, "--test", test, "--progress"]
  fit += ["--steps", "100000", "--coordinator", f"127.0.0.1:{port}"]
  # A shorter heartbeat than the default 60 s: the wait below is bounded by it.
  fit += ["--process-timeout", str(KILLED_TIMEOUT)]
  children = [
    subprocess.Popen(
      [*fit, "--num-processes", "2", "--process-id", str(i)],
      env=env,
      text=True,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
    )  # fmt: skip
    for i in range(2)
  ]
  err = []
  reader = threading.Thread(target=lambda: err.append(children[0].stderr.read()))
  try:
    # Process 0's progress bar says the joined fit is under way; then kill 1.
    seen = ""
    while "mfjax train" not in seen and children[0].poll() is None:
      seen += children[0].stderr.read(1)
    assert children[0].poll() is None, seen[-3000:]
    reader.start()
    children[1].kill()
    start = time.monotonic()
    children[0].wait(timeout=90)
    waited = time.monotonic() - start
    reader.join()
  finally:
    for child in children:
      child.kill()
      child.wait()
      if child.stderr and not child.stderr.closed and child is not children[0]:
        child.stderr.close()
    if not reader.is_alive() and children[0].stderr:
      children[0].stderr.close()
  assert children[0].returncode != 0
  # At once where mfjax sees the failed collective; else JAX's heartbeat timeout
  # (--process-timeout after the dead peer's last beat) bounds it, plus the time a
  # loaded machine takes to notice (CI once measured 60.6 s against a bound of 60).
  assert waited < KILLED_TIMEOUT + 15, waited
  text = "".join(err)
  if children[0].returncode == 1:  # mfjax saw the failed collective first.
    last = text.strip().splitlines()[-1]
    assert last.startswith("mfjax fit: error: process 0 stopped: another"), last
  else:  # JAX's coordination service saw the dead peer first and aborts: its
    # log and stack trace are held back, and one line says so (logfilter).
    assert children[0].returncode in (-6, 134), children[0].returncode
    last = text.strip().splitlines()[-1]
    assert last.startswith("mfjax fit: error: process 0: JAX's runtime ended it: "), (
      text[-3000:]
    )
    assert "JAX distributed service detected fatal errors" in last, last
    assert "Check failure stack trace" not in text and " @ " not in text, text[-3000:]


def _launch(tmp_path, *extra):
  """``mfjax launch -n 2 -- fit`` of a long fit: the process, reading its output."""
  train, test = _write(tmp_path / "t.tsv", 6000, 0), _write(tmp_path / "s.tsv", 1000, 1)
  argv = [sys.executable, "-m", "mfjax", "launch", "-n", "2", "--", "fit", train]
  argv += ["--test", test, "--steps", "100000", *extra]
  return subprocess.Popen(
    argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )


def _children(parent: int) -> list[int]:
  """The pids of ``parent``'s children (Linux's /proc)."""
  found = []
  for stat in Path("/proc").glob("[0-9]*/stat"):
    try:
      fields = stat.read_text().rpartition(") ")[2].split()
    except OSError:
      continue
    if int(fields[1]) == parent:
      found.append(int(stat.parent.name))
  return found


def _fitting(launcher, timeout=120) -> list[int]:
  """The two fit processes, once both run (their output has begun)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    children = _children(launcher.pid)
    if len(children) == 2 and all(
      "fit" in Path(f"/proc/{pid}/cmdline").read_text() for pid in children
    ):
      time.sleep(8)  # Joined and compiling or training.
      return children
    time.sleep(0.2)
  raise AssertionError("the fit processes did not start")


def _gone(pid: int) -> bool:
  try:
    state = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2][:1]
  except OSError:
    return True
  return state == "Z"


@pytest.mark.slow  # Two processes start and compile: about 20 s.
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux's /proc")
def test_a_stopped_process_ends_the_launch_and_every_process_quickly(tmp_path):
  # Issue 31: launch returned only after 116 s for a stopped peer, the other's
  # progress bar running; a survivor aborted with ~30 lines of C++ trace.
  import os
  import signal

  launcher = _launch(tmp_path)
  children = _fitting(launcher)
  os.kill(children[1], signal.SIGSTOP)
  start = time.monotonic()
  out, err = launcher.communicate(timeout=120)
  assert time.monotonic() - start < distributed.STOPPED_SECONDS + 15
  assert launcher.returncode != 0 and all(_gone(pid) for pid in children)
  assert "was stopped for" in err
  assert "[1] mfjax launch: process 1 ended (by SIGKILL)" in out, out[-3000:]
  assert "Check failure stack trace" not in out and "    @ " not in out, out[-3000:]


@pytest.mark.slow  # Two processes start and compile: about 20 s.
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux's /proc")
def test_sigterm_to_launch_ends_every_process(tmp_path):
  # Issue 31: SIGTERM to mfjax launch left both fits running, and they ignored
  # SIGTERM themselves (JAX's preemption notifier caught it).
  import signal

  launcher = _launch(tmp_path)
  children = _fitting(launcher)
  launcher.send_signal(signal.SIGTERM)
  start = time.monotonic()
  out, _ = launcher.communicate(timeout=60)
  assert time.monotonic() - start < 15, out[-3000:]
  assert launcher.returncode == 128 + signal.SIGTERM
  assert all(_gone(pid) for pid in children)
  for index in (0, 1):
    assert f"[{index}] mfjax launch: process {index} ended (by SIGTERM)" in out


@pytest.mark.slow  # Two processes join and fit 2 steps: about 15 s.
def test_json_of_joined_processes_is_alone_on_stdout(tmp_path):
  # Issue 31: with --json, stdout began with gloo's "[Gloo] Rank 0 is
  # connected to 1 peer ranks" line.
  train, test = _write(tmp_path / "t.tsv", 600, 0), _write(tmp_path / "s.tsv", 100, 1)
  port = distributed.free_port()
  fit = [sys.executable, "-m", "mfjax", "fit", train, "--test", test, "--steps", "2"]
  fit += ["--json", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
  children = [
    subprocess.Popen(
      [*fit, "--process-id", str(i)],
      env=ENV,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )  # fmt: skip
    for i in range(2)
  ]
  outputs = [child.communicate(timeout=120) for child in children]
  assert [child.returncode for child in children] == [0, 0], outputs
  assert json.loads(outputs[0][0])["n_test"] == 100  # One document, nothing else.
  assert outputs[1][0] == ""
