"""ttrl.rl: the GRPO-family update of TTRL.

config (RLConfig, torch-free) · batch (input groups, selection) · advantages · losses ·
packing (padding, micro-batches) · plan (one step's sequences, mini- and micro-batches) ·
forward (log-probs) · objective (one micro-batch's loss) · metrics (StepMetrics) ·
backends (torch, DeepSpeed) · checkpoint (atomic save) · trainer (Trainer). The model files
and the stop rule are :mod:`ttrl.lm`'s. See docs/training.md.
"""
