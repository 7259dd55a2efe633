"""Multi-host runs on JAX's own distributed runtime (``jax.distributed``).

Every process of a run executes the same command; ``initialize`` joins them into one JAX
cluster, after which ``jax.devices()`` lists every process's devices and jaxmac's mesh spans
them all. The cluster is described by the command's flags, else by the environment
(``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), else detected by JAX
itself on a TPU pod, under SLURM or Open MPI (``--distributed`` with no other flag). On CPU the
processes exchange data through gloo collectives. Files, logs and the progress display are
the main process's (``is_main``); every process computes, and writes its own shards of each
checkpoint (orbax).
"""

from __future__ import annotations

import os

import jax
from jax.experimental import multihost_utils

#: Environment variables read when the matching flag is not given.
ENVIRONMENT = {
    "coordinator": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    detect: bool = False,
) -> bool:
    """Join the JAX cluster the arguments (or the environment) describe; returns whether a
    cluster was joined. Nothing given and ``detect`` False: a single-process run (False). A
    process count or id without the coordinator's address is an error naming what is missing
    (on a TPU pod or under SLURM, give ``detect`` alone)."""
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    for name, variable in ENVIRONMENT.items():
        if given[name] is None and os.environ.get(variable):
            value = os.environ[variable]
            given[name] = value if name == "coordinator" else _count(variable, value)
    if not detect and all(v is None for v in given.values()):
        return False
    if not detect and given["coordinator"] is None:
        raise ValueError(
            "a multi-process run needs the coordinator's address (--coordinator HOST:PORT or "
            "JAX_COORDINATOR_ADDRESS) beside its process count and id; on a TPU pod or under "
            "SLURM give --distributed alone"
        )
    if given["num_processes"] is not None and not 0 <= (given["process_id"] or 0) < given["num_processes"]:
        raise ValueError(
            f"process_id must be in [0, num_processes={given['num_processes']}), got {given['process_id']}"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes: no effect elsewhere
    jax.distributed.initialize(given["coordinator"], given["num_processes"], given["process_id"])
    return True


def _count(variable: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{variable} must be an integer, got {value!r}") from None


def is_main() -> bool:
    """Whether this process writes the run's files and prints (process 0)."""
    return jax.process_index() == 0


def sync_processes(name: str) -> None:
    """Wait until every process of a multi-process run reaches the point called ``name``
    (nothing to wait for in a single process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
