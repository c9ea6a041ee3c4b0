"""The language model underneath both engines and the trainer: model files (files, load,
tensors, paths), device and dtype, left padding and where a completion ends (tokens).
Nothing here imports ``ttrl.engines``, ``ttrl.rl`` or ``ttrl.daemon``."""
