"""Multi-process runs (``jaxmac.distributed``): two local CPU processes form one JAX cluster
(gloo collectives) and train as one process does."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import small_runs
from processes import host_devices

from jaxmac.cli.main import main
from jaxmac.distributed import initialize
from jaxmac.training import Checkpoints, Run, RunConfig

ROOT = Path(__file__).resolve().parents[1]

#: The small MAPPO run of the other training tests (its one-device programs are theirs), with
#: an evaluation and a resume; both devices hold episodes.
TRAIN = [*small_runs.MAPPO, "--eval-ues", "1-2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jaxmac(args, devices, **env):
    """A ``jaxmac`` process on ``devices`` host CPU devices (not yet waited for)."""
    environment = {**host_devices(devices), **env}
    command = [sys.executable, "-m", "jaxmac.cli.main", *args]
    return subprocess.Popen(
        command, env=environment, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _finished(processes, timeout=300):
    outputs = []
    for p in processes:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err.decode()[-3000:]
        outputs.append((out.decode(), err.decode()))
    return outputs


def _two_processes(args):
    """The same command in two processes of one device each, joined by flags (process 0) and
    by the environment variables (process 1)."""
    address = f"127.0.0.1:{_free_port()}"
    flags = ["--coordinator", address, "--num-processes", "2", "--process-id", "0"]
    variables = {"JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    return _finished([_jaxmac([*args, *flags], 1), _jaxmac(args, 1, **variables)])


def _params(directory):
    run = Run.build(RunConfig.load(directory), directory)
    with Checkpoints(directory / "checkpoints", create=False) as checkpoints:
        return jax.device_get(run.algorithm.policy_params(run.restore(checkpoints)))


@pytest.mark.slow
def test_two_processes_train_and_resume_as_one_process_does(tmp_path):
    """Two processes of one device each against this process's one device (the episodes
    split over two devices train as on one: a sum in another order, hence the tolerances)."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", *TRAIN, "--updates", "4", "--out", str(one)]) == 0
    first = _two_processes(["train", *TRAIN, "--updates", "2", "--out", str(two)])
    second = _two_processes(["train", *TRAIN, "--updates", "4", "--resume", "--out", str(two)])
    # the main process alone prints (gloo's own connection line aside) and writes the files;
    # both compute, evaluate and write their checkpoint shards
    for (out0, err0), (out1, err1) in (first, second):
        assert "throughput" in out0 and "updates;" in err0
        assert "throughput" not in out1 and err1.strip() == "", err1[-2000:]
    rows = {d: [json.loads(r) for r in (d / "metrics.jsonl").read_text().splitlines()] for d in (one, two)}
    assert [r["update"] for r in rows[two]] == [1, 2, 3, 4]
    for a, b in zip(rows[one], rows[two], strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-4)
    for a, b in zip(jax.tree.leaves(_params(one)), jax.tree.leaves(_params(two)), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    evaluated = [json.loads((d / "eval.json").read_text()) for d in (one, two)]
    assert [r["throughput"] for r in evaluated[0]] == pytest.approx([r["throughput"] for r in evaluated[1]])


def test_a_process_count_without_the_coordinator_is_an_error_naming_it(monkeypatch):
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="needs the coordinator's address"):
        initialize(num_processes=2, process_id=0)
    with pytest.raises(ValueError, match=r"process_id must be in \[0, num_processes=2\), got 2"):
        initialize("127.0.0.1:1", 2, 2)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES must be an integer, got 'two'"):
        initialize("127.0.0.1:1")
    monkeypatch.delenv("JAX_NUM_PROCESSES")
    assert initialize() is False  # nothing given: one process


def test_an_option_that_begins_like_a_cluster_option_is_not_taken_for_one(monkeypatch):
    from jaxmac.cli.main import _join_cluster

    for variable in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(variable, raising=False)
    _join_cluster(["train", "--model", "flan-t5-large", "--out", "x"])  # not --model-shards
    with pytest.raises(SystemExit, match="needs the coordinator's address"):
        _join_cluster(["train", "--model", "tiny", "--num-processes", "2", "--process-id", "1"])
