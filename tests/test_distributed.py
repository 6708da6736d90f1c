"""mfjax.distributed and the CLI's multi-process options: checks, and real runs.

The checks run in this process (nothing is joined: every bad argument is refused
before jax.distributed starts). The slow test starts real processes: two
processes of two CPU devices each, joined with gloo on a free local port, fit
together and give the test RMSE of one process on one device.
"""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from mfjax import cli, distributed


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


@pytest.mark.slow  # Three processes compile the fit: about 30 s on 2 cores.
def test_two_processes_of_two_devices_fit_as_one_device(tmp_path):
  train, test = _write(tmp_path / "t.tsv", 6000, 0), _write(tmp_path / "s.tsv", 1000, 1)
  fit = ["fit", train, "--test", test, "--json", "--steps", "4", "--ensemble", "2"]
  env = {"MFJAX_COMPILATION_CACHE": "0", "PATH": "/usr/bin:/bin"}
  launched = subprocess.run(
    [sys.executable, "-m", "mfjax", "launch", "-n", "2", "--devices", "2", "--", *fit],
    capture_output=True, text=True, timeout=300, env=env,
  )  # fmt: skip
  assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
  # Only process 0 reports.
  assert "[1] {" not in launched.stdout
  one = subprocess.run(
    [sys.executable, "-m", "mfjax", *fit],
    capture_output=True, text=True, timeout=300, env=env,
  )  # fmt: skip
  assert one.returncode == 0, one.stderr[-3000:]
  together, alone = _report(launched.stdout), _report(one.stdout)
  assert together["n_train"] == alone["n_train"] == 5454
  np.testing.assert_allclose(together["test_rmse"], alone["test_rmse"], atol=1e-4)
  np.testing.assert_allclose(together["train_rmse"], alone["train_rmse"], atol=1e-4)


@pytest.mark.slow  # About 15 s: two processes compile, one is killed mid-fit.
def test_a_killed_process_stops_the_other_with_an_error(tmp_path):
  train, test = _write(tmp_path / "t.tsv", 6000, 0), _write(tmp_path / "s.tsv", 1000, 1)
  port = distributed.free_port()
  env = {
    "MFJAX_COMPILATION_CACHE": "0",
    "PATH": "/usr/bin:/bin",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
  }
  fit = [sys.executable, "-m", "mfjax", "fit", train, "--test", test, "--progress"]
  fit += ["--steps", "100000", "--coordinator", f"127.0.0.1:{port}"]
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
  assert waited < 60, waited  # At once here; the heartbeat timeout bounds it.
  text = "".join(err)
  if children[0].returncode == 1:  # mfjax saw the failed collective first.
    last = text.strip().splitlines()[-1]
    assert last.startswith("mfjax fit: error: process 0 stopped: another"), last
  else:  # JAX's coordination service saw the dead peer first and aborts.
    assert children[0].returncode in (-6, 134), children[0].returncode
    assert "JAX distributed service detected fatal errors" in text, text[-3000:]
