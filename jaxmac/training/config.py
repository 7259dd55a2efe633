"""``RunConfig``: everything that defines a training run, saved as ``config.json`` in the
run directory so that ``--resume`` and ``jaxmac eval --checkpoint`` rebuild the same run."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from jaxmac.agents import Agent
from jaxmac.algorithms import Algorithm
from jaxmac.env import EnvParams, UDTSEnv
from jaxmac.training.methods import METHODS, Method, make_agent, method

#: Hyperparameters a sweep may vary: every scalar of some method's hyperparameters and of
#: ``EnvParams`` (a run may sweep those of its own method).
SWEEPABLE = tuple(dict.fromkeys(n for m in METHODS.values() for n in m.hparam_ranges)) + tuple(
    f.name for f in dataclasses.fields(EnvParams)
)


#: The divergence guard of a run unless it sets its own (``RunConfig.stop_if``): losses this
#: large mean parameters already wrecked (a healthy PPO or MADDPG loss here stays below 1e4).
DEFAULT_STOP_IF = ("loss>1e6",)


def parse_bound(text: str) -> tuple[str, str, float]:
    """``"loss>1e6"`` -> ("loss", ">", 1e6); an error naming the form otherwise, also for a
    bound that is not a finite number (NaN would never be crossed: a guard silently off)."""
    for op in (">", "<"):
        name, found, value = text.partition(op)
        if found and name.strip():
            try:
                bound = float(value)
            except ValueError:
                break
            if math.isfinite(bound):
                return name.strip(), op, bound
            break
    raise ValueError(
        "stop_if entries must be NAME>VALUE or NAME<VALUE with a finite VALUE (e.g. loss>1e6, "
        f"entropy<0.01), "
        f"got {text!r}"
    )


#: The ``RunConfig`` fields no compiled program depends on: traced values (hyperparameters and
#: environment parameters; of the seeds and swept values only their number matters) and the
#: host loop's own settings.
HOST_FIELDS = (
    "hparams",
    "env_params",
    "seeds",
    "grid",
    "eval_every",
    "eval_ues",
    "eval_episodes",
    "greedy",
    "stop_if",
)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A training run (or a sweep: ``seeds`` x the ``grid`` of swept values, vmapped).

    ``algo`` names a registered method (``jaxmac.training.methods``); ``env`` holds ``UDTSEnv``
    fields, ``env_params`` ``EnvParams`` fields, ``algorithm`` the fields of the method's
    algorithm settings (``PPOConfig``), ``hparams`` the scalars of its hyperparameters
    (``HParams``) and ``agent`` the options of its agent (``LLMAgent.build``: model, pretrained,
    sie, raw_logits...; ``MAPPOAgent.build``: hidden).
    """

    algo: str = "mappo"
    no_comm: bool = False
    agent: dict[str, Any] = dataclasses.field(default_factory=dict)
    # a language agent's training prompts list at most this many UEs (None: max_ues; ``jaxmac
    # train`` sets the run's largest n_max); the run's n_max may not exceed it
    prompt_ues: int | None = None
    env: dict[str, Any] = dataclasses.field(default_factory=dict)
    env_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    algorithm: dict[str, Any] = dataclasses.field(default_factory=dict)
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    grid: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    chunk: int = 10  # updates per compiled call between host-side logging and checkpoints
    eval_every: int = 0  # evaluate every this many chunks (0: only at the end)
    eval_ues: tuple[int, ...] | None = None  # default 1..max_ues
    eval_episodes: int = 500
    greedy: bool = False  # evaluate the most likely decisions instead of sampling
    # Stop (before saving) when an update's metric crosses a bound: "NAME>VALUE" or "NAME<VALUE"
    # over the metrics the algorithm reports (a NaN or infinite loss always stops a run).
    stop_if: tuple[str, ...] = DEFAULT_STOP_IF

    def __post_init__(self) -> None:
        method(self.algo)  # a registered method
        sweepable = [*self.method.hparam_ranges, *(f.name for f in dataclasses.fields(EnvParams))]
        unknown = sorted(set(self.grid) - set(sweepable))
        if unknown:
            raise ValueError(f"swept names must be from {sweepable}, got {unknown}")
        if any(len(v) == 0 for v in self.grid.values()):
            raise ValueError("every swept name needs at least one value")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        for name in ("chunk", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for bound in self.stop_if:
            parse_bound(bound)
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        env = self.build_env()  # fail now on bad environment settings
        if self.eval_ues is not None and (
            not self.eval_ues or any(not 1 <= n <= env.max_ues for n in self.eval_ues)
        ):
            raise ValueError(
                f"eval_ues must be UE counts in [1, max_ues={env.max_ues}], got {list(self.eval_ues)}"
            )
        self.algorithm_config()
        self.base_hparams()
        bound = self.prompt_ues
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, int) or not 1 <= bound <= env.max_ues
        ):
            raise ValueError(
                f"prompt_ues must be None or an integer in [1, max_ues={env.max_ues}], got {bound!r}"
            )

    # ---------------------------------------------------------------- building
    def build_env(self) -> UDTSEnv:
        return UDTSEnv(**self.env)

    @property
    def method(self) -> Method:
        return method(self.algo)

    def build_agent(self) -> Agent:
        return make_agent(self.algo, self.build_env(), no_comm=self.no_comm, **self.agent)

    def algorithm_config(self) -> Any:
        """The method's algorithm settings (e.g. ``PPOConfig``) from the ``algorithm`` dict."""
        return self.method.config(**self.algorithm)

    def build_algorithm(self, mesh: Mesh | None = None, agent: Agent | None = None) -> Algorithm:
        """The method's algorithm for this run's agent (``agent``, else ``build_agent()``) and
        settings (``mesh``: the device mesh its episode arrays are sharded over; None sets no
        sharding constraints). It trains the agent bounded to ``prompt_ues`` if set
        (``Agent.bounded``: a language agent's BS prompts list no more UEs than training holds)."""
        agent = self.build_agent() if agent is None else agent
        trained = agent if self.prompt_ues is None else agent.bounded(self.prompt_ues)
        return self.method.algorithm(trained, self.algorithm_config(), mesh)

    def n_max(self) -> int:
        """The most active UEs any member's training episodes hold (the largest ``EnvParams.n_max``)."""
        return max(int(hp.env.n_max) for hp in self.member_hparams())

    @property
    def updates(self) -> int:
        """The run's length in updates."""
        return self.algorithm_config().updates

    def base_hparams(self) -> Any:
        env = self.build_env()
        params = env.default_params.replace(**self.env_params)
        env.check_params(params)
        return self.method.hparams(**self.hparams, env=params)

    @property
    def sweep(self) -> bool:
        """True when several runs are vmapped together (more than one seed or swept value)."""
        return len(self.members()) > 1

    def members(self) -> list[dict[str, Any]]:
        """One dict per run of the sweep: its seed and swept values, seeds outermost."""
        names = list(self.grid)
        return [
            {"seed": seed, **dict(zip(names, values, strict=True))}
            for seed in self.seeds
            for values in itertools.product(*(self.grid[n] for n in names))
        ]

    def member_hparams(self) -> list[Any]:
        base = self.base_hparams()
        out = []
        for member in self.members():
            swept = {k: v for k, v in member.items() if k != "seed"}
            env_part = {k: v for k, v in swept.items() if k in EnvParams.__dataclass_fields__}
            own = {k: v for k, v in swept.items() if k not in env_part}
            out.append(base.replace(**own, env=base.env.replace(**env_part)))
        return out

    def keys_and_hparams(self) -> tuple[jax.Array, Any]:
        """The PRNG keys and hparams of every member, stacked on a leading axis (also for one). A
        member's ``n_max`` above ``prompt_ues`` is an error naming both (checked here, where a run's
        values are taken, not in ``__post_init__``: a program key's configuration has no members)."""
        if self.prompt_ues is not None and self.n_max() > self.prompt_ues:
            raise ValueError(
                f"n_max must be <= prompt_ues={self.prompt_ues} (the run's prompts list at most "
                f"{self.prompt_ues} UEs; train into a new directory for more), got {self.n_max()}"
            )
        keys = [jax.random.PRNGKey(m["seed"]) for m in self.members()]
        return jnp.stack(keys), jax.tree.map(lambda *x: jnp.stack(x), *self.member_hparams())

    def member_name(self, name: str, member: dict[str, Any]) -> str:
        """``name`` plus, in a sweep, the member's seed and swept values: ``run[seed=0,lr=0.001]``."""
        if not self.sweep:
            return name
        return name + "[" + ",".join(f"{k}={v}" for k, v in member.items()) + "]"

    # ---------------------------------------------------------------- files
    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def program_key(self) -> str:
        """Sorted JSON of what the run's compiled programs depend on: every field but
        ``HOST_FIELDS`` and the run's length in updates (the host loop counts them; no program
        reads it: ``Algorithm.update_chunk``), and the number of members."""
        fields = {k: v for k, v in self.to_json().items() if k not in HOST_FIELDS}
        fields["algorithm"] = {k: v for k, v in fields["algorithm"].items() if k != "updates"}
        return json.dumps({**fields, "members": len(self.members())}, sort_keys=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"the run configuration has fields {unknown} this jaxmac does not know (allowed: "
                f"{sorted(known)}); it was written by another version (before the 'algorithm' "
                "settings, they were called 'ppo'): train into a new directory"
            )
        data = dict(data)
        data["seeds"] = tuple(data["seeds"])
        data["grid"] = {k: tuple(v) for k, v in data["grid"].items()}
        if data.get("eval_ues") is not None:
            data["eval_ues"] = tuple(data["eval_ues"])
        if "stop_if" in data:
            data["stop_if"] = tuple(data["stop_if"])
        return cls(**data)

    @classmethod
    def load(cls, run_dir: Path) -> RunConfig:
        path = Path(run_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{run_dir} is not a jaxmac run directory: it has no config.json (to start a run there, "
                "train without --resume)"
            )
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # not JSON, not a run configuration
            raise ValueError(f"{path} cannot be read as a run configuration: {e}") from None
