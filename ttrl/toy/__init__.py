"""ttrl.toy: the tiny model shipped with ttrl, its synthetic arithmetic task, `ttrl eval`.

See docs/tiny-model.md. Modules: task (problems), tokenizer, model (architecture),
train (pretraining), build (saving the shipped files), evaluate (greedy, pass@1, maj@n),
cli (the ``ttrl toy`` and ``ttrl eval`` commands).
"""
