"""The TTRL update: voted rollout groups in, a new model version out.

One :meth:`Trainer.step` = select M rollouts per group and drop groups without reward
spread -> group advantages -> (old and reference log-probs) -> ``ppo_epochs`` passes of
``mini_batches`` optimizer steps over token-budgeted micro-batches -> metrics.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from loguru import logger
from transformers import PreTrainedModel

from ttrl.lm.device import resolve_device
from ttrl.lm.files import check_model_dir
from ttrl.lm.load import load_causal_lm, load_tokenizer
from ttrl.lm.tokens import pad_token_id, stop_token_ids
from ttrl.rl.backends import Backend, DeepSpeedBackend, TorchBackend
from ttrl.rl.batch import RolloutGroup, select_groups
from ttrl.rl.checkpoint import save_checkpoint
from ttrl.rl.config import RLConfig
from ttrl.rl.metrics import StepMetrics, StepSums
from ttrl.rl.objective import micro_batch_loss, score
from ttrl.rl.plan import mini_batches, train_sequences


def _load_model(model_dir: Path, trust_remote_code: bool) -> PreTrainedModel:
    # fp32 weights everywhere: the optimizer keeps master weights in the parameter dtype, and
    # bf16 compute on CUDA comes from autocast. Safetensors only (see ttrl.lm.load).
    return load_causal_lm(model_dir, trust_remote_code=trust_remote_code, dtype=torch.float32)


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
        self.device = resolve_device(config.device, "rl.device")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
        module = _load_model(model_dir, trust_remote_code)
        if config.gradient_checkpointing:
            module.gradient_checkpointing_enable()
        # transformers wraps PreTrainedModel.to in functools.wraps: mypy sees no bound self.
        module.to(self.device).train()  # type: ignore[arg-type]
        # Where a completion ends, as the engines see it (the same tokenizer and configs).
        self.stop_ids = stop_token_ids(self.tokenizer, module.generation_config, module.config)
        self.pad_id = pad_token_id(self.tokenizer, self.stop_ids)
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
                .to(self.device)  # type: ignore[arg-type]  # (see the policy above)
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

        seqs, group_of_seq = train_sequences(selection.groups, cfg, self.stop_ids)
        metrics.sequences = len(seqs)
        metrics.tokens = sum(len(s.completion) for s in seqs)
        minis = mini_batches(
            seqs,
            group_of_seq,
            cfg,
            rng,
            rank=self.backend.rank,
            world_size=self.backend.world_size,
            pad_id=self.pad_id,
            device=self.device,
        )
        recompute = cfg.recompute_old_logprobs == "always" or cfg.ppo_epochs > 1 or len(minis) > 1
        sums = StepSums(self.device, self.backend.rank, self.backend.world_size)
        with torch.no_grad():
            if recompute:
                for mini in minis:
                    mini.old_logp = score(self.backend.model, mini, cfg.temperature, sums)
            if self.ref is not None:
                for mini in minis:
                    mini.ref_logp = score(self.ref, mini, cfg.temperature, None)

        norms: list[float] = []
        applied = True
        for _ in range(cfg.ppo_epochs):
            for mini in minis:
                for k in range(len(mini.micro)):
                    loss = micro_batch_loss(
                        self.backend.model, cfg, mini, k, sums, entropy_metric=not recompute
                    )
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

        nonfinite_loss = sums.finish(metrics, self.backend.all_reduce_sum, norms)
        if not applied:
            why = "non-finite loss" if nonfinite_loss else "non-finite gradient norm"
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
