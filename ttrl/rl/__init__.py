"""ttrl.rl: the GRPO-family update of TTRL.

config (RLConfig, torch-free) · batch (input groups, selection) · advantages · losses ·
packing (padding, micro-batches) · forward (log-probs) · backends (torch, DeepSpeed) ·
checkpoint (atomic save) · trainer (Trainer, StepMetrics). See docs/training.md.
"""
