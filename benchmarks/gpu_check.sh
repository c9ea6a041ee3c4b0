#!/usr/bin/env bash
# The GPU host check (benchmarks/gpu_check.py): HFEngine bf16, VLLMEngine generate + swap +
# sleep/wake, one bf16 GRPO step on a random Qwen2.5-0.5B-shaped model. Under 10 minutes.
# Needs ttrl installed with the vllm extra: pip install -e '.[vllm]'
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHON=${PYTHON:-python3}
exec timeout 600 "$PYTHON" benchmarks/gpu_check.py "$@"
