"""A plain NumPy/Python model of one UDTS episode, written from docs/SPEC.md §1 alone.

It shares no code with ``jaxmac`` on purpose: it keeps real FIFOs of SDU records
and loops over UEs one by one. The tests step it beside the JAX environment with
the same random draws (uniforms taken from ``UDTSEnv.draw_step``) and the same
actions, and compare everything each TTI.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

NOTHING, TRANSMIT, DELETE = 0, 1, 2
IDLE, COLLISION, SUCCESS, FAILURE = 0, 1, 2, 3


@dataclass
class SDU:
    arrived_at: int
    delivered: bool = False


@dataclass
class UE:
    active: bool = False
    fifo: deque = field(default_factory=deque)
    # history entries, newest first: (buffer, action, ucm, dcm)
    history: list = field(default_factory=list)


class ReferenceUDTS:
    """One episode at a time; ``cfg`` holds the static fields, ``p`` the dynamic ones (floats)."""

    EVENTS = (
        "arrivals",
        "drops",
        "lost",
        "lost_delivered",
        "deliveries",
        "duplicates",
        "failures",
        "collisions",
        "idle",
        "wasted",
        "bad_deletes",
        "good_deletes",
    )

    def __init__(self, cfg: dict, p: dict):
        self.cfg, self.p = cfg, p

    def reset(self, u_n: float) -> None:
        span = self.p["n_max"] - self.p["n_min"] + 1
        self.n_ues = self.p["n_min"] + min(int(np.floor(np.float32(u_n) * np.float32(span))), span - 1)
        k = self.cfg["history"]
        self.ues = [UE(active=i < self.n_ues) for i in range(self.cfg["max_ues"])]
        for ue in self.ues:
            ue.history = [(0, NOTHING, 0, 0)] * k
        self.channel_history = [(IDLE, -1)] * k
        self.t = 0
        self.totals = {name: 0 for name in self.EVENTS}
        self.totals["return"] = 0.0

    def step(self, draws: dict, ue_action, ucm, dcm) -> tuple[float, bool, dict]:
        p, cfg, k = self.p, self.cfg, self.cfg["history"]
        ev = {name: 0 for name in self.EVENTS}
        was_active = [ue.active for ue in self.ues]
        # 1. churn
        for i, ue in enumerate(self.ues):
            if ue.active and draws["leave"][i] < p["churn"]:
                ev["lost"] += len(ue.fifo)
                ev["lost_delivered"] += sum(s.delivered for s in ue.fifo)
                ue.active, ue.fifo = False, deque()
                ue.history = [(0, NOTHING, 0, 0)] * k
            elif not was_active[i] and i < p["n_max"] and draws["join"][i] < p["churn"]:
                ue.active, ue.fifo = True, deque()
                ue.history = [(0, NOTHING, 0, 0)] * k
        # 2. arrivals
        for i, ue in enumerate(self.ues):
            if ue.active and draws["arrive"][i] < p["p_arrival"]:
                ev["arrivals"] += 1
                if len(ue.fifo) < cfg["buffer_size"]:
                    ue.fifo.append(SDU(arrived_at=self.t))
                else:
                    ev["drops"] += 1
        # 3. actions
        chosen, transmitters, any_transmittable = [], [], False
        for i, ue in enumerate(self.ues):
            decided = ue.active and was_active[i]
            a = int(ue_action[i]) if decided else NOTHING
            chosen.append((a, int(ucm[i]) if decided else 0, int(dcm[i]) if decided else 0))
            if not ue.active or not ue.fifo or ue.fifo[0].arrived_at == self.t:
                continue
            any_transmittable = True
            if a == TRANSMIT:
                transmitters.append(i)
            elif a == DELETE:
                sdu = ue.fifo.popleft()
                ev["good_deletes" if sdu.delivered else "bad_deletes"] += 1
        # 4. channel (a deleting UE never transmits, so the HOL below is the transmitted SDU)
        if not transmitters:
            outcome = (IDLE, -1)
            ev["idle"] = 1
            ev["wasted"] = int(any_transmittable)
        elif len(transmitters) > 1:
            outcome = (COLLISION, -1)
            ev["collisions"] = ev["wasted"] = 1
        else:
            i = transmitters[0]
            if draws["decode"] >= p["tbler"]:
                sdu = self.ues[i].fifo[0]
                ev["duplicates" if sdu.delivered else "deliveries"] += 1
                sdu.delivered = True
                outcome = (SUCCESS, i)
            else:
                ev["failures"] = 1
                outcome = (FAILURE, i)
        # 5. reward
        weights = {
            "deliveries": "w_delivery",
            "duplicates": "w_duplicate",
            "wasted": "w_wasted",
            "bad_deletes": "w_bad_delete",
            "good_deletes": "w_good_delete",
            "failures": "w_failure",
            "drops": "w_drop",
        }
        reward = sum(p[w] * ev[name] for name, w in weights.items())
        # 6. observations
        for ue, (a, u, d) in zip(self.ues, chosen, strict=True):
            if ue.active:
                ue.history = [(len(ue.fifo), a, u, d)] + ue.history[:-1]
        self.channel_history = [outcome] + self.channel_history[:-1]
        active = [ue for ue in self.ues if ue.active]
        ev["buffered"] = sum(len(ue.fifo) for ue in active)
        ev["buffered_delivered"] = sum(s.delivered for ue in active for s in ue.fifo)
        ev["active_ues"] = len(active)
        for name in self.EVENTS:
            self.totals[name] += ev[name]
        self.totals["return"] += reward
        self.t += 1
        return reward, self.t >= cfg["episode_len"], ev

    def observation(self) -> dict:
        """Arrays shaped like ``jaxmac.Observation`` fields (padded rows all zero)."""
        rows = np.array(
            [
                [list(h) for h in ue.history] if ue.active else [[0, 0, 0, 0]] * self.cfg["history"]
                for ue in self.ues
            ]
        ).reshape(len(self.ues), self.cfg["history"], 4)
        return {
            "buffer": rows[..., 0],
            "action": rows[..., 1],
            "ucm": rows[..., 2],
            "dcm": rows[..., 3],
            "channel": np.array([c for c, _ in self.channel_history]),
            "sender": np.array([s for _, s in self.channel_history]),
            "active": np.array([ue.active for ue in self.ues]),
        }
