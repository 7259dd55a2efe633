"""The thin host loop around the compiled PPO chunks (Brax style).

Python runs once per chunk of ``config.chunk`` updates: it checks the chunk's losses, appends
the per-update metrics to ``metrics.jsonl`` and ``metrics.csv``, writes a checkpoint of the
whole runner state, reports throughput, and every ``eval_every`` chunks of updates (counted from
update 0, so a resumed run evaluates at the same points; and at the end)
evaluates the policy at fixed UE counts with ``jaxmac.evaluate``. A run directory holds
``config.json``, ``checkpoints/``, the metrics files and ``eval.jsonl``.

A chunk whose loss is NaN or infinite stops the run (``TrainingDiverged``) before anything of
it is written, so the newest checkpoint is the last good state. ``resume=True`` restores the
newest checkpoint and continues; the updates are deterministic functions of the state, so a
resumed run ends with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmac.agents import Agent, LearnedPolicy
from jaxmac.algorithms import EPISODE_AXIS, Algorithm, episode_devices
from jaxmac.compilation import compile_stored, fingerprint, signature
from jaxmac.distributed import is_main, sync_processes
from jaxmac.evaluation import EvaluationTable, evaluate
from jaxmac.models.sharding import MODEL_AXIS
from jaxmac.training.checkpoint import Checkpoints, DamagedCheckpoint
from jaxmac.training.config import RunConfig, parse_bound
from jaxmac.training.files import RunLock, write_json_atomic, write_text_atomic
from jaxmac.training.sinks import MetricSink, SinkOptions

#: Most episodes per compiled evaluation call. Smaller evaluations round their episode count up
#: to a power of two, so evaluations of similar size (at the end of training, then
#: ``jaxmac eval --checkpoint`` at other UE counts) reuse one compiled program, across processes
#: through the persistent cache. Padding lanes repeat one episode, which costs a language model
#: almost nothing (its prompts are deduplicated).
EVAL_CHUNK = 4096
#: The files a run writes beside its checkpoints: any of them in a directory means it holds a run.
RUN_RECORDS = ("metrics.jsonl", "eval.jsonl", "best.json")


def _quiet(message: str) -> None:
    """The log of a process other than the main one."""


class TrainingDiverged(RuntimeError):
    """A chunk produced a NaN or infinite loss; the run stopped without saving it."""


@dataclasses.dataclass
class RunResult:
    state: Any  # the algorithm's state, stacked over members (one for a single run)
    updates: int
    evaluation: EvaluationTable | None
    env_steps_per_s: float  # env steps (episode-TTIs, all members) per second of training, compile excluded
    seconds_per_update: float  # of training (all members together), compile excluded
    compile_s: float  # seconds spent compiling the chunk functions


def over_members(fn: Callable[..., Any], members: int, in_axes: tuple) -> Callable[..., Any]:
    """``fn`` on a stack of ``members`` runs (a leading axis on the arguments of ``in_axes`` 0
    and on every output): ``jax.vmap``, except that one member gets the axis removed before
    ``fn`` and added back after. Both give the same numbers; vmapping a size-1 axis would turn
    the program's indexing into batched gathers for nothing."""
    if members > 1:
        return jax.vmap(fn, in_axes=in_axes)

    def single(*args: Any) -> Any:
        unstacked = [
            jax.tree.map(lambda x: x[0], a) if axis == 0 else a for a, axis in zip(args, in_axes, strict=True)
        ]
        return jax.tree.map(lambda x: x[None], fn(*unstacked))

    return single


@jax.jit
def _member(stacked: Any, i: jax.Array) -> Any:
    """Row ``i`` of every leaf, in one program (eagerly, each leaf's shape compiled its own)."""
    return jax.tree.map(lambda x: x[i], stacked)


@dataclasses.dataclass(eq=False)
class Programs:
    """What every run of one configuration on one mesh shares within a process: the algorithm
    (its agent holds the model and the prompt tables), the stacked state's shardings, and the
    jitted init and chunk functions. Runs of an equal configuration but for their length (a
    resume, also one that extends the run; ``jaxmac eval --checkpoint`` after training in the
    same process; a notebook's second run) get the same ``Programs`` (``shared_programs``), so
    they neither rebuild the agent nor trace or compile its programs again: jit's caches and
    ``chunks`` serve them (state of other shapes or dtypes compiles anew). The algorithm's
    ``config.updates`` is its method's default: the programs never read it."""

    algorithm: Algorithm
    agent: Agent  # the run's agent, unbounded: the algorithm trains it bounded (``Agent.bounded``)
    members: int
    mesh: Mesh
    key: str  # the configurations' ``RunConfig.program_key``
    # ``compiled_chunk``'s programs, by ``n`` and the arguments' signature
    chunks: dict[tuple[int, str], Callable[..., Any]] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def state_shardings(self) -> Any:
        """The stacked state's shardings: the algorithm's partition specs behind a member axis
        (computed once: the specs come from an abstract init of the agent)."""
        specs = self.algorithm.partition_specs()
        return jax.tree.map(
            lambda spec: NamedSharding(self.mesh, P(None, *spec)), specs, is_leaf=lambda x: isinstance(x, P)
        )

    @functools.cached_property
    def init(self) -> Callable[..., Any]:
        """``init(keys, hparams)`` of every member, jitted."""
        init = over_members(self.algorithm.init, self.members, (0, 0))
        return jax.jit(init, out_shardings=self.state_shardings)

    def compiled_chunk(self, state: Any, hparams: Any, n: int) -> Callable[[Any, Any, int], Any]:
        """Every member's ``update_chunk`` for ``n`` updates, compiled for arguments like
        ``state`` and ``hparams``, as ``chunk(state, hparams, count)``: once per process, and in
        a later process reloaded without tracing (``jaxmac.compilation.compile_stored``: the
        program is stored under ``chunk_key`` and ``n``). The state is donated: its buffers
        become the new state's (a large model's parameters and optimizer state are not held
        twice)."""
        state_tree, hparams_tree = jax.tree.structure(state), jax.tree.structure(hparams)
        key = (n, signature((state, hparams)))
        if key not in self.chunks:
            update = over_members(self.algorithm.update_chunk, self.members, (0, 0, None, None))

            def flat(state_leaves: list, hparams_leaves: list, count: Any) -> tuple[list, Any]:
                new, metrics = update(
                    jax.tree.unflatten(state_tree, state_leaves),
                    jax.tree.unflatten(hparams_tree, hparams_leaves),
                    n,
                    count,
                )
                return jax.tree.leaves(new), metrics

            replicated = NamedSharding(self.mesh, P())  # every process reads every metric
            compiled = compile_stored(
                flat,
                (jax.tree.leaves(state), jax.tree.leaves(hparams), n),
                lambda: fingerprint(self.chunk_key, n),
                donate_argnums=(0,),
                out_shardings=(jax.tree.leaves(self.state_shardings), replicated),
            )

            def chunk(state: Any, hparams: Any, count: int) -> tuple[Any, dict[str, jax.Array]]:
                leaves, metrics = compiled(jax.tree.leaves(state), jax.tree.leaves(hparams), count)
                return jax.tree.unflatten(state_tree, leaves), metrics

            self.chunks[key] = chunk
        return self.chunks[key]

    @functools.cached_property
    def chunk_key(self) -> str:
        """What the chunk programs depend on besides their arguments: the configuration (its
        ``program_key``, which leaves out the run's length: a resume that extends a run, in a
        later process, calls the same stored program), the algorithm (its agent's prompt tables
        included) and the mesh."""
        return fingerprint(json.loads(self.key), self.algorithm, str(self.mesh))


@functools.lru_cache(maxsize=4)
def shared_programs(program_key: str, mesh: Mesh) -> Programs:
    """The ``Programs`` of the configurations of ``program_key`` (``RunConfig.program_key``) on
    ``mesh``. The four most recently used stay alive, with their models: a model checkpoint
    directory is read once per process (``shared_programs.cache_clear()`` forgets them all)."""
    fields = json.loads(program_key)
    members = fields.pop("members")
    config = RunConfig(**fields)
    agent = config.build_agent()
    return Programs(config.build_algorithm(mesh, agent), agent, members, mesh, program_key)


@dataclasses.dataclass
class Run:
    """A run directory's configuration and the programs it runs (``Programs``). The state always
    holds a stack of members (a single run is a sweep of one), sharded over ``mesh``: the
    members' axis first, then each algorithm's own episode axis."""

    config: RunConfig
    directory: Path
    programs: Programs
    keys: jax.Array  # (members, 2)
    hparams: Any  # the method's hyperparameters, stacked over members
    compiled: Any = None  # the chunk program: compiled, stored or in ``Programs.chunks``, on the first chunk
    compile_seconds: float = 0.0  # spent compiling (milliseconds when an earlier run had compiled)

    @classmethod
    def build(cls, config: RunConfig, directory: Path, model_shards: int = 1) -> Run:
        """The run in ``directory`` over every device of every process: a mesh of the episode
        axis by a model axis of ``model_shards`` devices (parameters split over it,
        ``jaxmac.models.sharding``; 1: replicated)."""
        devices = jax.devices()
        if isinstance(model_shards, bool) or not isinstance(model_shards, int) or model_shards < 1:
            raise ValueError(f"model_shards must be an integer >= 1, got {model_shards!r}")
        if len(devices) % model_shards:
            raise ValueError(f"model_shards={model_shards} must divide the {len(devices)} devices")
        grid = np.asarray(devices).reshape(-1, model_shards)
        mesh = Mesh(grid, (EPISODE_AXIS, MODEL_AXIS))
        shared = shared_programs(config.program_key(), mesh)
        reported = shared.algorithm.metric_names
        for name in (parse_bound(bound)[0] for bound in config.stop_if):
            if name not in reported:  # before any compile or file
                raise ValueError(
                    f"stop_if names {name!r}, which this run does not report: {sorted(reported)}"
                )
        keys, hparams = config.keys_and_hparams()
        return cls(config, Path(directory), shared, keys, hparams)

    @property
    def algorithm(self) -> Algorithm:
        return self.programs.algorithm

    @property
    def mesh(self) -> Mesh:
        return self.programs.mesh

    @property
    def agent(self) -> Agent:
        """The run's agent for any UE count (evaluation's); the training program's is bounded."""
        return self.programs.agent

    @property
    def members(self) -> int:
        return self.programs.members

    @property
    def state_shardings(self) -> Any:
        return self.programs.state_shardings

    def init(self) -> Any:
        return self.programs.init(self.keys, self.hparams)

    def chunk(self, state: Any, n: int) -> tuple[Any, dict[str, jax.Array]]:
        """``n`` <= ``config.chunk`` updates of every member (``state`` is consumed: use the
        returned one); metrics (members, n) per name. One program, compiled for
        ``config.chunk`` updates on the first call (timed in ``compile_seconds``), serves every
        ``n``: a run's shorter last chunk and a resume reuse it."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.config.chunk:
            raise ValueError(f"n must be an integer in [1, chunk={self.config.chunk}], got {n!r}")
        if self.compiled is None:
            start = time.perf_counter()
            self.compiled = self.programs.compiled_chunk(state, self.hparams, self.config.chunk)
            self.compile_seconds += time.perf_counter() - start
        state, metrics = self.compiled(state, self.hparams, n)
        return state, jax.tree.map(lambda m: m[..., :n], metrics)

    def member_params(self, state: Any, i: int) -> Any:
        """Member ``i``'s policy parameters (taken from the stack, not the whole state sliced).
        ``i`` is checked here: the compiled take would clamp an index out of range."""
        members = len(self.config.members())
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < members:
            raise ValueError(f"member must be an integer in [0, {members}) for this run, got {i!r}")
        return _member(self.algorithm.policy_params(state), i)

    def restore_kept(self, best: bool = False) -> Any:
        """The run directory's newest checkpoint, or (``best``) its best evaluated one, read
        without writing anything."""
        kept = self.directory / ("best" if best else "checkpoints")
        if best and not kept.is_dir():
            raise FileNotFoundError(
                f"{self.directory} has no best checkpoint yet (kept in {kept} when the run evaluates: "
                "at its end, or every --eval-every chunks)"
            )
        with Checkpoints(kept, create=False) as checkpoints:
            return self.restore(checkpoints)

    def restore(self, checkpoints: Checkpoints) -> Any:
        """The newest checkpoint (the structure comes from an abstract init: nothing is computed)."""
        step = checkpoints.latest()
        if step is None:
            raise FileNotFoundError(f"{self.directory} has no checkpoint")
        # read straight into this run's layout (the jitted init's out_shardings): a checkpoint
        # written on other devices (another count, another process count) is resharded as it is read
        like = jax.eval_shape(self.programs.init, self.keys, self.hparams)
        return checkpoints.restore(step, like)

    def evaluate(
        self,
        state: Any,
        ues: list[int] | None = None,
        episodes: int | None = None,
        key: jax.Array | None = None,
        greedy: bool | None = None,
        env_params: dict[str, Any] | None = None,
    ) -> EvaluationTable:
        """Every member's policy at fixed UE counts (the paper's evaluation), named after the
        run directory, its episodes laid out over the run's mesh like the training's. Defaults
        come from the run's configuration; ``env_params`` replaces ``EnvParams`` fields of every
        member (e.g. another arrival rate)."""
        config = self.config
        greedy = config.greedy if greedy is None else greedy
        ues = list(ues or config.eval_ues or range(1, self.agent.env.max_ues + 1))
        episodes = config.eval_episodes if episodes is None else episodes  # 0 is an error, not a default
        chunk_size = min(EVAL_CHUNK, 1 << (len(ues) * episodes - 1).bit_length())
        split = chunk_size % episode_devices(self.mesh) == 0
        lanes = NamedSharding(self.mesh, P(EPISODE_AXIS)) if split else None
        table = EvaluationTable([])
        for i, (member, hp) in enumerate(zip(config.members(), config.member_hparams(), strict=True)):
            policy = LearnedPolicy(self.agent, self.member_params(state, i), greedy)
            table += evaluate(
                self.agent.env,
                policy,
                hp.env.replace(**(env_params or {})),
                ues,
                episodes,
                key,
                name=config.member_name(self.directory.name, member),
                chunk_size=chunk_size,
                sharding=lanes,
            )
        return table


def _rows(run: Run, metrics: dict[str, np.ndarray], first_update: int, seconds: float) -> list[dict]:
    """One row per (member, update) of a chunk's metrics ((members, n) per name); a sweep's rows
    name their member."""
    config, rows = run.config, []
    steps = run.algorithm.steps_per_update
    for i, member in enumerate(config.members()):
        for j in range(next(iter(metrics.values())).shape[-1]):
            row = {"update": first_update + j + 1, **({"member": i, **member} if run.members > 1 else {})}
            row["env_steps"] = (first_update + j + 1) * steps
            # NaN (e.g. the return of an update in which no episode ended) is written as null
            row |= {k: float(v[i, j]) if np.isfinite(v[i, j]) else None for k, v in metrics.items()}
            row["chunk_seconds"] = seconds
            rows.append(row)
    return rows


def _append(directory: Path, rows: list[dict]) -> None:
    with open(directory / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    path = directory / "metrics.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _read_rows(path: Path, log: Callable[[str], None] | None = None) -> list[dict]:
    """The rows of one of the run's JSON-lines files (none if it is missing); a line that does
    not parse (an append cut short) is left out, with a warning naming the file if ``log``."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines() if path.exists() else [], 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if log is not None:
                log(f"{path}: dropped line {number}, which does not parse (a write cut short)")
    return rows


def _write_rows(path: Path, rows: list[dict]) -> None:
    """``path`` replaced at once by ``rows`` as JSON lines."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def _evaluations(directory: Path, update: int | None = None) -> list[dict]:
    """The rows of the run's ``eval.jsonl`` (of ``update`` alone, if given)."""
    return [r for r in _read_rows(directory / "eval.jsonl") if update is None or r["update"] == update]


def _truncate(directory: Path, update: int, log: Callable[[str], None]) -> None:
    """Keep the metric and evaluation rows up to ``update`` (rows past it were written before a
    crash that came before their checkpoint, or belong to the checkpoints a resume from an
    earlier one set aside). A metrics line that does not parse (an append cut short) is dropped
    with a warning naming the file. Every file is replaced at once (``write_text_atomic``), so a
    crash here loses nothing."""
    if (directory / "eval.jsonl").exists():
        _write_rows(directory / "eval.jsonl", [r for r in _evaluations(directory) if r["update"] <= update])
    jsonl = directory / "metrics.jsonl"
    if not jsonl.exists():
        return
    rows = _read_rows(jsonl, log)
    kept = [r for r in rows if r["update"] <= update]
    _write_rows(jsonl, kept)
    if not kept:
        (directory / "metrics.csv").unlink(missing_ok=True)  # the next append writes the header
        return
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(kept[0]))
    writer.writeheader()
    writer.writerows(kept)
    write_text_atomic(directory / "metrics.csv", table.getvalue())


def _check(metrics: dict[str, np.ndarray], stop_if: tuple[str, ...], done: int, directory: Path) -> None:
    """Raise ``TrainingDiverged`` if a chunk's metrics ((members, n) per name) hold a non-finite
    loss, a skipped step, or a value beyond a ``stop_if`` bound (NaN values, e.g. the return of
    an update in which no episode ended, cross no bound)."""
    checks = [("a non-finite loss", (metrics["nonfinite"] > 0) | ~np.isfinite(metrics["loss"]))]
    for bound in stop_if:
        name, op, value = parse_bound(bound)  # a name the run reports (``Run.build``)
        crossed = metrics[name] > value if op == ">" else metrics[name] < value
        checks.append((f"{name} {op} {value:g} (the stop_if bound)", crossed & np.isfinite(metrics[name])))
    for what, bad in checks:
        if np.any(bad):
            first = done + 1 + int(np.argmax(np.any(bad, axis=0)))
            raise TrainingDiverged(
                f"{what} in updates {done + 1}-{done + bad.shape[-1]} (first at update {first}); "
                f"stopped without saving them; the last good checkpoint is update {done} in "
                f"{directory / 'checkpoints'}"
            )


def train_run(
    config: RunConfig,
    directory: Path,
    *,
    resume: bool = False,
    previous_checkpoint: bool = False,
    changes: dict[str, tuple[Any, Any]] | None = None,
    log: Callable[[str], None] = print,
    on_chunk: Callable[[int, int, dict[str, Any]], None] | None = None,
    sinks: SinkOptions | None = None,
    model_shards: int = 1,
) -> RunResult:
    """Train (or resume) the run in ``directory`` up to ``config.updates``. ``changes`` (setting
    -> (old, new)) are what a resumed ``config`` changed; they are appended to the run's
    ``history.jsonl`` with the update they take effect from. A damaged newest checkpoint is an
    error naming it (``DamagedCheckpoint``); ``previous_checkpoint`` sets it aside and resumes
    from the one before (the updates are deterministic, so nothing is lost but their time).

    ``on_chunk(done, total, info)`` is called after every chunk with the updates done, the
    total, and ``info`` holding ``env_steps_per_s`` and the chunk's last metrics. ``sinks``
    chooses TensorBoard and W&B beside the metrics files (``jaxmac.training.sinks``);
    ``model_shards`` splits the parameters over that many devices (``Run.build``).

    In a multi-process run (``jaxmac.distributed``) every process calls this with the same
    arguments: all of them compute and write their shards of each checkpoint; the main process
    alone holds the lock, writes the other files, logs and calls ``on_chunk``."""
    directory = Path(directory)
    if resume and not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"{directory} holds no run to resume (no config.json); start one without resume"
        )
    run = Run.build(
        config, directory, model_shards
    )  # loads the model: bad settings fail before any file is written
    if not is_main():  # another process of a multi-process run: computes, writes its checkpoint shards
        log, on_chunk, sinks = _quiet, None, SinkOptions()
    with RunLock(directory, log) if is_main() else contextlib.nullcontext():
        if not resume:
            held = [f for f in RUN_RECORDS if (directory / f).exists()]
            if any((directory / "checkpoints").glob("*")) or held:
                raise FileExistsError(
                    f"{directory} already holds a run{f' (its {held[0]})' if held else ''}; pass "
                    "resume=True (--resume) or another directory"
                )
        sync_processes("jaxmac: the run directory is checked")  # by every process, before any write
        with Checkpoints(directory / "checkpoints", writer=True) as checkpoints:
            return _train(
                run,
                checkpoints,
                resume,
                previous_checkpoint,
                changes or {},
                log,
                on_chunk,
                sinks or SinkOptions(),
            )


def _restore(run: Run, checkpoints: Checkpoints, previous: bool, log: Callable[[str], None]) -> Any:
    """The newest checkpoint; with ``previous``, a damaged one is set aside (and logged) and the
    one before it restored, until one reads."""
    while True:
        try:
            return run.restore(checkpoints)
        except DamagedCheckpoint:
            step = checkpoints.latest()
            if not previous or step is None:
                raise
            if is_main():
                log(f"checkpoint {step} cannot be read: moved to {checkpoints.set_aside(step)}")
            sync_processes("jaxmac: a damaged checkpoint is set aside")
            checkpoints.manager.reload()


def _train(
    run: Run,
    checkpoints: Checkpoints,
    resume: bool,
    previous_checkpoint: bool,
    changes: dict[str, tuple[Any, Any]],
    log: Callable[[str], None],
    on_chunk: Callable[[int, int, dict[str, Any]], None] | None,
    sinks: SinkOptions,
) -> RunResult:
    """``train_run``'s work, under the run directory's lock."""
    config, directory = run.config, run.directory

    if resume and checkpoints.latest() is not None:
        state = _restore(run, checkpoints, previous_checkpoint, log)
        done = checkpoints.latest()
        # the resumed settings are recorded once the state is read: a resume that fails leaves
        # config.json as it was, so the same command asks for the same changes again
        if is_main():
            _truncate(directory, done, log)
            write_json_atomic(directory / "config.json", config.to_json())
        log(f"resumed {directory} at update {done}")
        if changes and is_main():
            entry = {"update": done, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "changed": changes}
            with open(directory / "history.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")
            log(
                f"changed from update {done + 1}: "
                + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items())
            )
    else:  # config.json before the first checkpoint: a directory with checkpoints can be resumed
        if is_main():
            write_json_atomic(directory / "config.json", config.to_json())
        state = run.init()
        done = 0
        checkpoints.save(0, state)
    with contextlib.ExitStack() as stack:
        opened = [
            stack.enter_context(contextlib.closing(s)) for s in sinks.open(directory, config.to_json(), done)
        ]
        return _loop(run, checkpoints, state, done, opened, log, on_chunk)


def _loop(
    run: Run,
    checkpoints: Checkpoints,
    state: Any,
    done: int,
    sinks: list[MetricSink],
    log: Callable[[str], None],
    on_chunk: Callable[[int, int, dict[str, Any]], None] | None,
) -> RunResult:
    """The chunks from update ``done`` to the run's end, then the final evaluation."""
    config, directory = run.config, run.directory
    total = config.updates
    steps_per_update = run.algorithm.steps_per_update * run.members
    steps, trained, seconds_total, evaluation = 0, 0, 0.0, None
    period = config.eval_every * config.chunk  # updates between evaluations, counted from 0
    if config.eval_every and 0 < done < total and done % period == 0 and not _evaluations(directory, done):
        _evaluated(run, state, done, log, sinks)  # resumed where a kill cut that evaluation short
    while done < total:
        n = min(config.chunk, total - done)
        compile_before = run.compile_seconds
        start = time.perf_counter()
        new_state, metrics = run.chunk(state, n)
        metrics = jax.device_get(metrics)
        seconds = time.perf_counter() - start - (run.compile_seconds - compile_before)
        _check(metrics, config.stop_if, done, directory)
        rows = _rows(run, metrics, done, seconds)
        if is_main():
            _append(directory, rows)
        for sink in sinks:
            sink.write(rows)
        state, done = new_state, done + n
        checkpoints.save(done, state)
        steps, trained, seconds_total = steps + n * steps_per_update, trained + n, seconds_total + seconds
        if on_chunk is not None:
            last = {k: float(np.mean(v[..., -1])) for k, v in metrics.items()}
            rates = {"env_steps_per_s": n * steps_per_update / seconds, "seconds_per_update": seconds / n}
            on_chunk(done, total, rates | last)
        if config.eval_every and done // period > (done - n) // period and done < total:
            _evaluated(run, state, done, log, sinks)
    if done > 0:
        evaluation = _evaluated(run, state, done, log, sinks)
        if is_main():
            write_json_atomic(directory / "eval.json", evaluation.rows)
    rate = steps / seconds_total if seconds_total else math.nan
    per_update = seconds_total / trained if trained else math.nan
    return RunResult(state, done, evaluation, rate, per_update, run.compile_seconds)


def _evaluated(
    run: Run, state: Any, update: int, log: Callable[[str], None], sinks: list[MetricSink]
) -> EvaluationTable:
    """Evaluate ``state``, record the rows in ``eval.jsonl`` (one evaluation per update:
    evaluating an update again, e.g. the last one of a finished run resumed with other
    evaluation settings, replaces its rows), and keep the state as the run's best (``best/`` and
    ``best.json``) when its mean throughput over the rows (every member and UE count) beats the
    best so far: the kept checkpoint beside the newest, which a collapse after it cannot replace
    (``jaxmac eval --checkpoint DIR --best``). Scores are compared under the same evaluation
    settings only (``best.json`` records them): when they change, the best is chosen anew."""
    table = run.evaluate(state)  # the same rows on every process
    directory, config = run.directory, run.config
    if is_main():
        earlier = [r for r in _evaluations(directory) if r["update"] != update]
        _write_rows(directory / "eval.jsonl", earlier + [{"update": update, **row} for row in table.rows])
    for sink in sinks:
        sink.write_evaluation(update, table.rows)
    score = float(np.mean([row["throughput"] for row in table.rows]))
    settings = {
        "ues": sorted({row["n_ues"] for row in table.rows}),
        "episodes": table.rows[0]["episodes"],
        "greedy": config.greedy,
        "env_params": config.to_json()["env_params"],
    }
    best = directory / "best.json"
    previous = json.loads(best.read_text()) if best.exists() else None
    sync_processes("jaxmac: best.json is read")  # by every process, before the main one rewrites it
    comparable = previous is not None and previous.get("evaluation", settings) == settings
    if not comparable or score > previous["throughput"]:
        if previous is not None and not comparable:
            log(f"the evaluation settings differ from best.json's: the best is chosen anew at {update}")
        with Checkpoints(directory / "best", keep=1, writer=True) as kept:
            if kept.latest() != update:  # else it holds this update's state already
                kept.save(update, state)
        if is_main():
            write_json_atomic(best, {"update": update, "throughput": score, "evaluation": settings})
        log(f"update {update} is the best evaluated so far (mean throughput {score:.4f}): kept in best/")
    sync_processes("jaxmac: best.json is written")  # no process reads it before then
    return table
