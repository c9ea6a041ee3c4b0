"""The language model underneath both engines and the trainer: model files, tokenizer, device,
padding and where a completion ends. Nothing here imports ``ttrl.engines`` or ``ttrl.rl``."""
