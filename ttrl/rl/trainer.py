"""The TTRL update: voted rollout groups in, a new model version out.

One :meth:`Trainer.step` = select M rollouts per group and drop groups without reward
spread -> group advantages -> (old and reference log-probs) -> ``ppo_epochs`` passes of
``mini_batches`` optimizer steps over token-budgeted micro-batches -> metrics.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from loguru import logger
from transformers import PreTrainedModel

from ttrl.engines.model_files import check_model_dir, load_causal_lm, load_tokenizer
from ttrl.engines.tokens import cut_at_stop
from ttrl.rl.advantages import compute_advantages
from ttrl.rl.backends import Backend, DeepSpeedBackend, TorchBackend
from ttrl.rl.batch import RolloutGroup, select_groups
from ttrl.rl.checkpoint import save_checkpoint
from ttrl.rl.config import RLConfig
from ttrl.rl.forward import completion_logprobs
from ttrl.rl.losses import (
    aggregate_loss,
    clipped_policy_loss,
    kl_penalty,
    policy_drift_kl,
    truncated_is_weights,
)
from ttrl.rl.packing import (
    MicroBatch,
    TrainSequence,
    collate,
    shard_micro_batches,
)


@dataclass
class StepMetrics:
    """What one step did; the daemon stores these on the new ``model_versions`` row.

    ``loss`` is the mean over optimizer steps of the full objective; ``lr`` the learning
    rate of the step's first optimizer step; ``entropy`` is the
    token-mean entropy of the policy before the update; ``approx_kl`` is the k3 estimate of
    KL(old || new) over the updates (0 on the first pass by construction).
    ``is_ratio_mean`` / ``is_ratio_max``: the importance ratio pi_old / mu over the tokens
    whose engine logprobs were known (before truncation at ``rl.is_cap``),
    ``is_clip_frac`` the share of them truncated, ``is_tokens`` their number (NaN/0
    without engine logprobs or with ``rl.is_correction`` off).
    """

    version: int
    skipped: bool = False
    skip_reason: str | None = None
    loss: float = math.nan
    pg_loss: float = math.nan
    kl: float = math.nan
    entropy: float = math.nan
    clip_frac: float = math.nan
    approx_kl: float = math.nan
    grad_norm: float = math.nan
    lr: float = math.nan
    groups: int = 0
    groups_dropped: int = 0
    groups_low_share: int = 0
    sequences: int = 0
    tokens: int = 0
    mean_reward: float = math.nan
    staleness: int = 0
    is_ratio_mean: float = math.nan
    is_ratio_max: float = math.nan
    is_clip_frac: float = math.nan
    is_tokens: int = 0
    optimizer_steps: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float | int | bool | str | None]:
        return asdict(self)


@dataclass
class _MiniBatch:
    """The micro-batches of one optimizer step on this rank, with global normalisers."""

    micro: list[MicroBatch]
    num_tokens: float
    num_seqs: int
    old_logp: list[torch.Tensor] | None = None
    ref_logp: list[torch.Tensor] | None = None


# Slots of the metric vector summed over micro-batches and ranks.
_LOSS, _PG, _KL, _CLIP, _AKL, _ENT, _ENT_TOK, _TOK, _NONFINITE, _IS, _IS_TOK, _IS_CLIP = range(12)
_SLOTS = 12


def _resolve_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _eos_ids(model: PreTrainedModel, tokenizer) -> tuple[int, ...]:
    ids: set[int] = set()
    for source in (model.generation_config, model.config):
        eos = getattr(source, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return tuple(sorted(ids))


def _load_model(model_dir: Path, trust_remote_code: bool) -> PreTrainedModel:
    # fp32 weights everywhere: the optimizer keeps master weights in the parameter dtype, and
    # bf16 compute on CUDA comes from autocast. Safetensors only (see model_files).
    return load_causal_lm(model_dir, trust_remote_code=trust_remote_code, dtype=torch.float32)


def step_chunks(
    group_of_seq: Sequence[int], steps: int, split: str, rng: random.Random
) -> list[list[int]]:
    """Sequence indices per optimizer step, in a random order: ``split="groups"`` keeps each
    group in one step; ``"rollouts"`` deals the sequences out singly (TRL's shuffle), so
    every step sees most problems. At most ``steps`` steps, none empty."""
    if split == "rollouts":
        units = [[i] for i in range(len(group_of_seq))]
    else:
        by_group: dict[int, list[int]] = {}
        for i, g in enumerate(group_of_seq):
            by_group.setdefault(g, []).append(i)
        units = list(by_group.values())
    rng.shuffle(units)
    n = min(steps, len(units))
    chunks = [units[k * len(units) // n : (k + 1) * len(units) // n] for k in range(n)]
    return [sorted(i for unit in chunk for i in unit) for chunk in chunks]


class Trainer:
    """GRPO-family trainer for one policy loaded from a local Hugging Face directory."""

    def __init__(
        self,
        config: RLConfig,
        model_dir: str | Path,
        *,
        version: int = 0,
        trust_remote_code: bool = False,
        reference_dir: str | Path | None = None,
    ) -> None:
        """Load the policy from ``model_dir`` and, when ``kl_coef > 0``, the frozen reference
        from ``reference_dir`` (default ``model_dir``; a resumed daemon passes the base model,
        so KL keeps measuring the distance from where training started).

        Raises:
            FileNotFoundError: no ``config.json`` or no safetensors weights in ``model_dir``.
            ModelFilesError: a corrupt file there (named in the message).
        """
        model_dir = Path(model_dir)
        check_model_dir(model_dir)  # before the tokenizer, which reads config.json too
        self.config = config
        self.version = version
        self._calls = 0
        self.device = _resolve_device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
        module = _load_model(model_dir, trust_remote_code)
        if config.gradient_checkpointing:
            module.gradient_checkpointing_enable()
        module.to(self.device).train()
        self.eos_ids = _eos_ids(module, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids, default=0)
        self.backend: Backend
        # The learning-rate decay resumes where a model at this version left it (estimated:
        # skipped updates and short batches take fewer steps).
        steps_done = version * config.ppo_epochs * config.mini_batches
        if config.deepspeed_config is not None:
            self.backend = DeepSpeedBackend(
                module, config, config.deepspeed_config, self.device.type == "cuda", steps_done
            )
        else:
            self.backend = TorchBackend(module, config, steps_done)
        self.ref: PreTrainedModel | None = None
        if config.kl_coef > 0:
            self.ref = (
                _load_model(Path(reference_dir or model_dir), trust_remote_code)
                .to(self.device)
                .eval()
                .requires_grad_(False)
            )

    @property
    def module(self) -> PreTrainedModel:
        """The (unwrapped) Hugging Face policy."""
        return self.backend.module

    # -- the step --------------------------------------------------------------------------

    def step(self, groups: Sequence[RolloutGroup]) -> StepMetrics:
        """Train on voted rollout groups; every rank must pass the same groups.

        The update is skipped (weights and version unchanged, ``skipped`` set) when no group
        has reward spread, or when a loss or the gradient norm is not finite.
        """
        start = time.perf_counter()
        cfg = self.config
        rng = random.Random(cfg.seed * 1_000_003 + self._calls)
        self._calls += 1
        selection = select_groups(
            groups, cfg.train_samples, cfg.drop_uniform_groups, rng, cfg.min_label_share
        )
        rollouts = [r for g in groups for r in g.rollouts]
        metrics = StepMetrics(
            version=self.version,
            groups=len(groups),
            groups_dropped=selection.dropped_uniform,
            groups_low_share=selection.dropped_low_share,
            mean_reward=sum(r.reward for r in rollouts) / max(len(rollouts), 1),
            staleness=self.version - min((r.model_version for r in rollouts), default=self.version),
            lr=self.backend.lr,
        )
        if not selection.groups:
            why = "no group has reward spread"
            if selection.dropped_low_share:
                why = (
                    f"no group left: {selection.dropped_uniform} without reward spread, "
                    f"{selection.dropped_low_share} below rl.min_label_share"
                )
            return self._skipped(metrics, why, start)

        seqs, group_of_seq = self._sequences(selection.groups)
        metrics.sequences = len(seqs)
        metrics.tokens = sum(len(s.completion) for s in seqs)
        minis = self._mini_batches(seqs, group_of_seq, rng)
        recompute = cfg.recompute_old_logprobs == "always" or cfg.ppo_epochs > 1 or len(minis) > 1
        sums = torch.zeros(_SLOTS, dtype=torch.float64, device=self.device)
        # Per-rank maximum of the importance ratio, summed into a vector (one slot a rank).
        self._is_max = torch.zeros(self.backend.world_size, dtype=torch.float64, device=self.device)
        with torch.no_grad():
            if recompute:
                for mini in minis:
                    mini.old_logp = self._score(self.backend.model, mini, sums)
            if self.ref is not None:
                for mini in minis:
                    mini.ref_logp = self._score(self.ref, mini, None)

        norms: list[float] = []
        applied = True
        for _ in range(cfg.ppo_epochs):
            for mini in minis:
                for k, mb in enumerate(mini.micro):
                    loss = self._micro_loss(mini, k, mb, sums, entropy_metric=not recompute)
                    # The loss is already normalised by whole-batch counts; multiplying by
                    # the world size undoes the data-parallel gradient average.
                    self.backend.backward(loss * self.backend.world_size, k == len(mini.micro) - 1)
                norm, applied = self.backend.step()
                norms.append(norm)
                metrics.optimizer_steps += 1
                if not applied:
                    break
            if not applied:
                break

        sums = self.backend.all_reduce_sum(sums).tolist()
        steps = metrics.optimizer_steps
        metrics.loss = sums[_LOSS] / steps
        metrics.pg_loss = sums[_PG] / steps
        metrics.kl = sums[_KL] / steps
        metrics.clip_frac = sums[_CLIP] / max(sums[_TOK], 1.0)
        metrics.approx_kl = sums[_AKL] / max(sums[_TOK], 1.0)
        metrics.entropy = sums[_ENT] / max(sums[_ENT_TOK], 1.0)
        metrics.grad_norm = sum(norms) / len(norms)
        if sums[_IS_TOK] > 0:
            metrics.is_tokens = int(sums[_IS_TOK])
            metrics.is_ratio_mean = sums[_IS] / sums[_IS_TOK]
            metrics.is_clip_frac = sums[_IS_CLIP] / sums[_IS_TOK]
            metrics.is_ratio_max = float(self.backend.all_reduce_sum(self._is_max).max())
        if not applied:
            why = "non-finite loss" if sums[_NONFINITE] > 0 else "non-finite gradient norm"
            return self._skipped(metrics, why, start)
        self.version += 1
        metrics.version = self.version
        metrics.seconds = time.perf_counter() - start
        return metrics

    def _skipped(self, metrics: StepMetrics, reason: str, start: float) -> StepMetrics:
        metrics.skipped = True
        metrics.skip_reason = reason
        metrics.seconds = time.perf_counter() - start
        if self.backend.rank == 0:
            logger.warning(
                "GRPO step skipped at version {}: {}; nothing to export", self.version, reason
            )
        return metrics

    def _sequences(self, groups: Sequence[RolloutGroup]) -> tuple[list[TrainSequence], list[int]]:
        """Flatten groups into sequences with their advantages (computed in float64)."""
        rewards, group_ids = [], []
        for g_idx, group in enumerate(groups):
            rewards += [r.reward for r in group.rollouts]
            group_ids += [g_idx] * len(group.rollouts)
        adv = compute_advantages(
            self.config.advantage,
            torch.tensor(rewards, dtype=torch.float64),
            torch.tensor(group_ids),
            self.config.adv_eps,
        ).tolist()
        rollouts = [r for g in groups for r in g.rollouts]
        # Train on the EOS itself (a sampled action), never on what an engine left after it.
        correct = self.config.is_correction
        seqs = []
        for r, a in zip(rollouts, adv, strict=True):
            completion = cut_at_stop(r.completion_token_ids, self.eos_ids)[0]
            behaviour = r.logprobs[: len(completion)] if correct and r.logprobs else None
            seqs.append(TrainSequence(list(r.prompt_token_ids), completion, a, behaviour))
        return seqs, group_ids

    def _mini_batches(
        self, seqs: list[TrainSequence], group_of_seq: list[int], rng: random.Random
    ) -> list[_MiniBatch]:
        """Split the sequences into ``mini_batches`` optimizer steps
        (:func:`step_chunks`), then shard each into this rank's micro-batches."""
        minis = []
        for idx in step_chunks(
            group_of_seq, self.config.mini_batches, self.config.mini_batch_split, rng
        ):
            plan = shard_micro_batches(
                [seqs[i].length for i in idx],
                self.backend.world_size,
                self.config.micro_batch_tokens,
            )[self.backend.rank]
            micro = [
                collate([seqs[idx[j]] for j in mb], self.pad_id)
                if mb
                else self._padding_batch(seqs[idx[0]])
                for mb in plan
            ]
            minis.append(
                _MiniBatch(
                    micro=[m.to(self.device) for m in micro],
                    num_tokens=float(sum(len(seqs[i].completion) for i in idx)),
                    num_seqs=len(idx),
                )
            )
        return minis

    def _padding_batch(self, seq: TrainSequence) -> MicroBatch:
        """A micro-batch that trains nothing, for a rank with fewer sequences than its peers
        have micro-batches (every rank must run the same number of forwards under ZeRO)."""
        mb = collate([seq], self.pad_id)
        mb.response_mask.zero_()
        mb.advantages.zero_()
        return mb

    def _score(
        self, model: torch.nn.Module, mini: _MiniBatch, sums: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """Log-probs of every micro-batch under ``model``; with ``sums``, also the entropy
        metric of the policy before the update."""
        out = []
        for mb in mini.micro:
            logp, ent = completion_logprobs(
                model, mb, temperature=self.config.temperature, with_entropy=sums is not None
            )
            out.append(logp)
            if sums is not None and ent is not None:
                sums[_ENT] += (ent * mb.response_mask).sum()
                sums[_ENT_TOK] += mb.response_mask.sum()
        return out

    def _micro_loss(
        self,
        mini: _MiniBatch,
        k: int,
        mb: MicroBatch,
        sums: torch.Tensor,
        entropy_metric: bool,
    ) -> torch.Tensor:
        """This micro-batch's share of the mini-batch objective, normalised by the counts of
        the whole mini-batch so that micro-batch (and rank) losses add up exactly."""
        cfg = self.config
        logp, entropy = completion_logprobs(
            self.backend.model,
            mb,
            temperature=cfg.temperature,
            with_entropy=entropy_metric or cfg.entropy_coef > 0,
            entropy_grad=cfg.entropy_coef > 0,
        )
        # On-policy shortcut: with one optimizer step per batch the old policy *is* the
        # current one, so the detached log-probs are exactly what a recompute would give.
        old = logp.detach() if mini.old_logp is None else mini.old_logp[k]
        mask = mb.response_mask

        def agg(mat: torch.Tensor) -> torch.Tensor:
            return aggregate_loss(
                mat,
                mask,
                cfg.loss_agg,
                num_tokens=mini.num_tokens,
                num_seqs=mini.num_seqs,
                max_len=cfg.max_completion_tokens,
            )

        pg_mat, clipped = clipped_policy_loss(
            logp, old, mb.advantages, cfg.clip_low, cfg.clip_high, cfg.dual_clip
        )
        if cfg.is_correction:
            weights, ratio = truncated_is_weights(old, mb.behaviour_logp, cfg.is_cap)
            pg_mat = pg_mat * weights
            with torch.no_grad():  # masked sums, no host sync per micro-batch
                known = ~torch.isnan(ratio) & (mask > 0)
                seen = torch.where(known, ratio, torch.zeros_like(ratio))
                sums[_IS] += seen.sum()
                sums[_IS_TOK] += known.sum()
                sums[_IS_CLIP] += (seen > cfg.is_cap).sum()
                rank = self.backend.rank
                self._is_max[rank] = torch.maximum(self._is_max[rank], seen.max().double())
        pg = agg(pg_mat)
        loss = pg
        if mini.ref_logp is not None:
            kl = agg(kl_penalty(logp, mini.ref_logp[k], cfg.kl_estimator))
            loss = loss + cfg.kl_coef * kl
            sums[_KL] += kl.detach()
        if cfg.entropy_coef > 0 and entropy is not None:
            loss = loss - cfg.entropy_coef * agg(entropy)
        with torch.no_grad():
            sums[_LOSS] += loss.detach()
            sums[_PG] += pg.detach()
            sums[_CLIP] += (clipped * mask).sum()
            sums[_AKL] += (policy_drift_kl(old, logp) * mask).sum()
            sums[_TOK] += mask.sum()
            if entropy_metric and entropy is not None:
                sums[_ENT] += (entropy.detach() * mask).sum()
                sums[_ENT_TOK] += mask.sum()
        if not torch.isfinite(loss):
            sums[_NONFINITE] += 1
            # Make the gradient NaN too, so the backend's finiteness check (DeepSpeed's
            # overflow check included) skips the update on every rank.
            loss = loss * float("nan")
        return loss

    # -- export ----------------------------------------------------------------------------

    @property
    def shares_weights(self) -> bool:
        """Whether :meth:`named_tensors` yields the live parameters themselves, which only
        :meth:`step` changes and never by a non-finite step (plain torch, one process): a
        co-located engine may serve them in place (``update_weights(..., share=True)``)."""
        return isinstance(self.backend, TorchBackend)

    def named_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The current parameters by Hugging Face name, for ``Engine.update_weights``.

        Full tensors on every rank (gathered one at a time under ZeRO-3, so every rank must
        iterate to the end). Tensors may alias the live weights: copy, don't modify.
        """
        return self.backend.named_tensors()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Full parameters plus persistent buffers (a collective under ZeRO-3)."""
        state = dict(self.backend.named_tensors())
        buffers = {name for name, _ in self.module.named_buffers()}
        for name, tensor in self.module.state_dict().items():
            if name in buffers:
                state[name] = tensor
        return state

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write a ``from_pretrained``-loadable directory atomically (rank 0 writes; every
        rank must call)."""
        state = self.state_dict()
        if self.backend.rank == 0:
            save_checkpoint(path, state, self.module, self.tokenizer)
        self.backend.barrier()
        return Path(path)
