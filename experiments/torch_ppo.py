"""jaxmac's PPO minibatch update written in PyTorch the way the paper authors' Lamorel code does it.

This is the reference the training benchmark times jaxmac against, so it follows what a
PyTorch user of Lamorel (and GLAM's PPO updater) would write, not what would be fastest:

* Scoring (``score_prompts``): encode the prompts once, repeat the encoder states once per
  candidate, run transformers' ``T5ForConditionalGeneration`` over every (prompt, candidate)
  pair with teacher forcing (decoder input ``[decoder_start] + candidate[:-1]``), a
  candidate's score is the sum of its real tokens' log-softmax log-probabilities (Eq. 9);
  the policy is the log-softmax over the candidates (Eq. 10). The critic is GLAM's MLP
  (``value_head``) on the final-normed decoder state at the first decoder position
  (``decoder_hidden_states[-1][:, 0]``, as Lamorel's value module reads it).
* Only the active agents' prompts are computed: 2n per transition (each active UE's own and
  the BS's about each active UE). A transition's joint log-probability, entropy and value are
  means over its 2n decisions (Eq. 11, the same as ``jaxmac.agents.policy.fuse``).
* ``TorchPPO.update``: one SGD step on a minibatch. The advantage is normalised over the whole
  minibatch (``jaxmac.algorithms.normalize``), then the minibatch is processed in passes of
  ``transitions_per_pass`` transitions (gradient accumulation: memory is bounded by a pass);
  each pass pads its UE prompts and its BS prompts to the pass's longest prompt, and its loss
  is scaled so that the accumulated gradient is the whole-minibatch gradient of
  ``jaxmac.algorithms.ppo_objective``. Then ``clip_grad_norm_`` and ``torch.optim.Adam`` (optax's
  defaults: b1 0.9, b2 0.999, eps 1e-8). No dropout, float32.

``load_into_torch`` copies jaxmac's parameters (``LLMAgent.init``'s pure dict) into a
transformers T5 and a value head; ``build_torch`` makes both from a ``T5Config``; ``torch_scores``
is the no-grad minibatched scorer of ``bench_actor.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
import transformers

TERMS = ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")


# ---------------------------------------------------------------------------------------- scoring
def value_head(d_model: int, hidden: int) -> torch.nn.Module:
    """GLAM's critic head: Linear(d, h) - Sigmoid - Linear(h, h) - Sigmoid - Linear(h, 1)."""
    return torch.nn.Sequential(
        torch.nn.Linear(d_model, hidden),
        torch.nn.Sigmoid(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.Sigmoid(),
        torch.nn.Linear(hidden, 1),
    )


def decoder_start(model: transformers.T5ForConditionalGeneration) -> int:
    """The decoder's start token (transformers 5 keeps it in the generation config; T5: pad, 0)."""
    for source in (model.config, getattr(model, "generation_config", None)):
        value = getattr(source, "decoder_start_token_id", None)
        if value is not None:
            return int(value)
    return int(model.config.pad_token_id or 0)


def score_prompts(
    model: transformers.T5ForConditionalGeneration,
    ids: torch.Tensor,
    mask: torch.Tensor,
    cand_ids: torch.Tensor,
    cand_mask: torch.Tensor,
    head: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Lamorel's scoring of P prompts against the same C candidates, in one forward pass.

    ids, mask: (P, W) int64 prompts (padded to their longest); cand_ids (C, Lc) int64 and
    cand_mask (C, Lc) float32 the candidates. Returns the scores (P, C), each the sum of the
    candidate's token log-probabilities (not yet normalised over candidates), and, with
    ``head``, the values (P,) of the final-normed decoder state at the first decoder position.
    Differentiable unless called under ``torch.no_grad()``.
    """
    p, c = ids.shape[0], cand_ids.shape[0]
    encoded = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    start = torch.full((c, 1), decoder_start(model), dtype=torch.int64)
    decoder_ids = torch.cat([start, cand_ids[:, :-1]], -1).repeat(p, 1)  # teacher forcing
    out = model(
        encoder_outputs=(encoded.repeat_interleave(c, 0),),
        attention_mask=mask.repeat_interleave(c, 0),
        decoder_input_ids=decoder_ids,
        output_hidden_states=head is not None,
    )
    targets = cand_ids.repeat(p, 1)
    token = torch.gather(torch.log_softmax(out.logits, -1), -1, targets[..., None])[..., 0]
    scores = (token * cand_mask.repeat(p, 1)).sum(-1).reshape(p, c)  # Eq. 9
    if head is None:
        return scores, None
    first = out.decoder_hidden_states[-1][::c, 0]  # (P, d): position 0 is the same for every candidate
    return scores, head(first.float())[:, 0]


def _candidate_tensors(candidates: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = candidates
    return (
        torch.tensor(np.asarray(ids, np.int64)),
        torch.tensor(np.asarray(mask, np.float32)),
    )


def _trimmed(ids: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-aligned prompts (P, L) -> int64 tensors cut to the longest real prompt."""
    width = max(1, int(np.asarray(mask).sum(1).max()))
    return (
        torch.tensor(np.asarray(ids[:, :width], np.int64)),
        torch.tensor(np.asarray(mask[:, :width], np.int64)),
    )


def torch_scores(
    model: transformers.T5ForConditionalGeneration,
    ids: np.ndarray,
    mask: np.ndarray,
    candidates: tuple[Any, Any],
    batch: int,
) -> np.ndarray:
    """No-grad scores (P, C) of P prompts, in minibatches of ``batch`` prompts each padded to its
    longest prompt; ``candidates`` = (ids (C, Lc), mask (C, Lc))."""
    cand_ids, cand_mask = _candidate_tensors(candidates)
    out = []
    with torch.no_grad():
        for start in range(0, len(ids), batch):
            sl = slice(start, start + batch)
            scores, _ = score_prompts(model, *_trimmed(ids[sl], mask[sl]), cand_ids, cand_mask)
            out.append(scores.numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------- weights
_ENCODER_SUBLAYERS = {
    "attention": "0.SelfAttention",
    "attention_norm": "0.layer_norm",
    "ff": "1.DenseReluDense",
    "ff_norm": "1.layer_norm",
}
_DECODER_SUBLAYERS = {
    "self_attention": "0.SelfAttention",
    "self_attention_norm": "0.layer_norm",
    "cross_attention": "1.EncDecAttention",
    "cross_attention_norm": "1.layer_norm",
    "ff": "2.DenseReluDense",
    "ff_norm": "2.layer_norm",
}
_TOP = {
    "shared": "shared",
    "encoder_norm": "encoder.final_layer_norm",
    "decoder_norm": "decoder.final_layer_norm",
    "lm_head": "lm_head",
}


def _leaves(tree: Mapping, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value


def hf_name(path: tuple) -> tuple[str, bool]:
    """A leaf path of jaxmac's T5 pure dict -> (transformers parameter name, whether the array is
    a Linear kernel (in, out), i.e. the transpose of torch's weight)."""
    *module, leaf = (str(p) for p in path)
    if module[0] in ("encoder", "decoder"):
        stack, block, sub, *rest = module
        table = _ENCODER_SUBLAYERS if stack == "encoder" else _DECODER_SUBLAYERS
        module = [f"{stack}.block.{block}.layer.{table[sub]}", *rest]
    else:
        module = [_TOP[module[0]], *module[1:]]
    return ".".join([*module, "weight"]), leaf == "kernel"


def load_into_torch(
    model: transformers.T5ForConditionalGeneration,
    head: torch.nn.Module | None,
    params: Mapping,
    cfg: Any = None,
) -> None:
    """Copy jaxmac's parameters ``{"t5": ..., "value_head": ...}`` (pure dicts, as ``LLMAgent.init``
    returns them) into ``model`` and ``head`` (``value_head(d, h)``), in place.

    The LM head follows ``params``: without ``t5/lm_head`` it is tied to the shared embedding,
    with it ``model.lm_head`` gets its own weights (transformers 5 always ties at construction).
    Every parameter of ``model`` must be set; ``cfg`` (a ``jaxmac`` ``T5Config``), if given, is
    checked against the model's decoder-output rescaling.
    """
    if cfg is not None and bool(cfg.scale_decoder_outputs) != bool(model.config.scale_decoder_outputs):
        raise ValueError(
            f"jaxmac scale_decoder_outputs={cfg.scale_decoder_outputs} but the torch model has "
            f"{model.config.scale_decoder_outputs}"
        )
    t5 = params["t5"]
    if "lm_head" in t5 and model.lm_head.weight is model.shared.weight:
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    elif "lm_head" not in t5:
        model.lm_head.weight = model.shared.weight
    named = dict(model.named_parameters(remove_duplicate=False))
    unset = {n for n, p in named.items() if p is not model.shared.weight} | {"shared.weight"}
    with torch.no_grad():
        for path, value in _leaves(t5):
            name, transpose = hf_name(path)
            array = np.asarray(value, np.float32)
            array = array.T if transpose else array
            if name not in named:
                raise ValueError(f"jaxmac parameter {'/'.join(map(str, path))} ({name}) has no torch match")
            if tuple(named[name].shape) != array.shape:
                raise ValueError(f"{name}: torch {tuple(named[name].shape)} vs jaxmac {array.shape}")
            named[name].copy_(torch.tensor(array))
            unset.discard(name)
        if unset:
            raise ValueError(f"torch parameters not in jaxmac's params: {sorted(unset)[:5]}")
        if head is not None:
            linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
            layers = params["value_head"]["layers"]
            if len(linears) != len(layers):
                raise ValueError(f"value head: torch has {len(linears)} layers, jaxmac {len(layers)}")
            for i, linear in enumerate(linears):
                layer = layers[i] if i in layers else layers[str(i)]
                linear.weight.copy_(torch.tensor(np.asarray(layer["kernel"], np.float32).T))
                linear.bias.copy_(torch.tensor(np.asarray(layer["bias"], np.float32)))


def build_torch(cfg: Any, params: Mapping) -> tuple[transformers.T5ForConditionalGeneration, torch.nn.Module]:
    """A transformers T5 of jaxmac's ``cfg`` and a value head, holding ``params`` (eval mode)."""
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**cfg.hf_kwargs()))
    kernel = params["value_head"]["layers"]
    first = kernel[0] if 0 in kernel else kernel["0"]
    head = value_head(cfg.d_model, int(np.shape(first["kernel"])[1]))
    load_into_torch(model, head, params, cfg)
    return model.eval(), head.eval()


# -------------------------------------------------------------------------------------------- PPO
@dataclasses.dataclass
class TorchBatch:
    """One PPO minibatch of N transitions, all NumPy (M = max_ues)."""

    ue_ids: np.ndarray  # (N, M, L_ue) int32 token ids of each UE's own prompt
    ue_mask: np.ndarray  # (N, M, L_ue) bool
    bs_ids: np.ndarray  # (N, M, L_bs) the BS's prompt about each UE slot
    bs_mask: np.ndarray
    active: np.ndarray  # (N, M) bool: which slots hold a UE (padded slots are not agents)
    ue_choice: np.ndarray  # (N, M) int chosen UE candidate index
    bs_choice: np.ndarray  # (N, M) int chosen BS candidate index
    log_prob: np.ndarray  # (N,) float32 joint log-prob under the rollout policy (Eq. 11)
    value: np.ndarray  # (N,) rollout value
    advantage: np.ndarray  # (N,) GAE advantage, NOT yet normalised
    target: np.ndarray  # (N,) GAE return

    @classmethod
    def from_jaxmac(cls, batch: Any, prompts: Any) -> TorchBatch:
        """From a ``jaxmac.algorithms.Batch`` (advantage not normalised) with one leading axis and
        its ``Prompts`` (``jax.vmap(agent.compiler)(batch.obs)``)."""
        f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
        return cls(
            ue_ids=np.asarray(prompts.ue_ids),
            ue_mask=np.asarray(prompts.ue_mask, bool),
            bs_ids=np.asarray(prompts.bs_ids),
            bs_mask=np.asarray(prompts.bs_mask, bool),
            active=np.asarray(batch.obs.active, bool),
            ue_choice=np.asarray(batch.sample.ue),
            bs_choice=np.asarray(batch.sample.bs),
            log_prob=f32(batch.log_prob),
            value=f32(batch.value),
            advantage=f32(batch.advantage),
            target=f32(batch.target),
        )

    def __len__(self) -> int:
        return len(self.active)


def normalize(advantage: np.ndarray) -> torch.Tensor:
    """As ``jaxmac.algorithms.normalize``: (A - mean A) / (std A + 1e-8), population std, float32."""
    a = torch.tensor(np.asarray(advantage, np.float32))
    return (a - a.mean()) / (a.std(correction=0) + 1e-8)


class TorchPPO:
    """The PPO minibatch update of jaxmac on a transformers T5 and a torch value head."""

    def __init__(
        self,
        model: transformers.T5ForConditionalGeneration,
        value_head: torch.nn.Module,
        candidates: dict[str, tuple[np.ndarray, np.ndarray]],
        lr: float,
        clip_eps: float,
        vf_coef: float,
        ent_coef: float,
        kl_coef: float,
        max_grad_norm: float,
        transitions_per_pass: int = 8,
    ) -> None:
        if transitions_per_pass < 1:
            raise ValueError(f"transitions_per_pass must be >= 1, got {transitions_per_pass}")
        self.model = model.eval()  # no dropout
        self.value_head = value_head.eval()
        self.candidates = {group: _candidate_tensors(candidates[group]) for group in ("ue", "bs")}
        self.clip_eps, self.vf_coef, self.ent_coef, self.kl_coef = clip_eps, vf_coef, ent_coef, kl_coef
        self.max_grad_norm = max_grad_norm
        self.transitions_per_pass = transitions_per_pass
        self.params = [*model.parameters(), *value_head.parameters()]
        if any(p.dtype != torch.float32 for p in self.params):
            raise ValueError("TorchPPO expects float32 parameters")
        self.optimizer = torch.optim.Adam(self.params, lr=lr, betas=(0.9, 0.999), eps=1e-8)

    def _policy(self, batch: TorchBatch, rows: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Joint log-prob, entropy and value (T,) of the transitions ``rows``: one forward of the
        pass's active UE prompts and one of its active BS prompts."""
        active = batch.active[rows]
        owner = torch.tensor(np.nonzero(active)[0])  # transition of each active decision
        totals = [torch.zeros(len(active)) for _ in range(3)]
        for group in ("ue", "bs"):
            ids = getattr(batch, f"{group}_ids")[rows][active]
            if len(ids) == 0:
                continue
            mask = getattr(batch, f"{group}_mask")[rows][active]
            choice = torch.tensor(np.asarray(getattr(batch, f"{group}_choice")[rows][active], np.int64))
            scores, value = score_prompts(
                self.model, *_trimmed(ids, mask), *self.candidates[group], self.value_head
            )
            log_probs = torch.log_softmax(scores, -1)  # Eq. 10
            chosen = log_probs.gather(1, choice[:, None])[:, 0]
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            for total, x in zip(totals, (chosen, entropy, value), strict=True):
                total.index_add_(0, owner, x)
        count = torch.tensor(2.0 * active.sum(1).astype(np.float32)).clamp(min=1e-9)
        return tuple(t / count for t in totals)  # Eq. 11: means over the 2n decisions

    def _sums(self, batch: TorchBatch, rows: slice, advantage: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sums over the transitions ``rows`` of each PPO term (``ppo_objective``'s per-transition
        summands); ``advantage`` is the whole minibatch's, normalised."""
        log_prob, entropy, value = self._policy(batch, rows)
        f32 = lambda x: torch.tensor(np.asarray(x[rows], np.float32))  # noqa: E731
        old_log_prob, old_value, target = f32(batch.log_prob), f32(batch.value), f32(batch.target)
        adv, eps = advantage[rows], self.clip_eps
        log_ratio = log_prob - old_log_prob
        ratio = torch.exp(log_ratio)
        policy = -torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - eps, 1.0 + eps) * adv)
        value_clipped = old_value + torch.clamp(value - old_value, -eps, eps)
        value_loss = 0.5 * torch.maximum((value - target) ** 2, (value_clipped - target) ** 2)
        kl = (ratio - 1.0) - log_ratio
        sums = {
            "policy_loss": policy.sum(),
            "value_loss": value_loss.sum(),
            "entropy": entropy.sum(),
            "approx_kl": kl.sum(),
            "clip_frac": ((ratio - 1.0).abs() > eps).float().sum(),
        }
        sums["loss"] = (
            sums["policy_loss"]
            + self.vf_coef * sums["value_loss"]
            - self.ent_coef * sums["entropy"]
            + self.kl_coef * sums["approx_kl"]
        )
        return sums

    def _passes(self, batch: TorchBatch) -> Iterator[slice]:
        for start in range(0, len(batch), self.transitions_per_pass):
            yield slice(start, start + self.transitions_per_pass)

    def loss(self, batch: TorchBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """The whole-minibatch loss (differentiable: every pass's graph is kept) and its terms."""
        advantage = normalize(batch.advantage)
        parts = [self._sums(batch, rows, advantage) for rows in self._passes(batch)]
        means = {name: sum(p[name] for p in parts) / len(batch) for name in TERMS}
        return means["loss"], {name: float(v.detach()) for name, v in means.items()}

    def backward(self, batch: TorchBatch) -> dict[str, float]:
        """Zero the gradients, then accumulate the whole-minibatch gradient into ``.grad`` pass by
        pass (each pass's loss scaled by its share of the minibatch); returns the loss terms."""
        self.optimizer.zero_grad(set_to_none=True)
        advantage = normalize(batch.advantage)
        terms = dict.fromkeys(TERMS, 0.0)
        for rows in self._passes(batch):
            sums = self._sums(batch, rows, advantage)
            (sums["loss"] / len(batch)).backward()
            for name in TERMS:
                terms[name] += float(sums[name].detach()) / len(batch)
        return terms

    def update(self, batch: TorchBatch) -> dict[str, float]:
        """One SGD step: gradients accumulated over the passes, clipped to ``max_grad_norm``, an Adam
        step. Returns the loss terms and ``grad_norm`` (before clipping)."""
        terms = self.backward(batch)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        return {**terms, "grad_norm": float(grad_norm)}
