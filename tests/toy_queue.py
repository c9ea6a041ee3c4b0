"""Toy problems (levels 1-2, with reference answers) into the queue, for the tests that run
the daemon (``tests/`` is on pytest's ``pythonpath``, see pyproject.toml)."""

from __future__ import annotations

from sqlalchemy import Engine

from ttrl.db import queue, transaction
from ttrl.toy.task import generate_problems


def enqueue_toy(db: Engine, seed: int, count: int, passes: int, prefix: str) -> None:
    """``count`` problems drawn with ``seed``, each wanting ``passes`` passes, with external
    ids ``{prefix}-{i}``."""
    with transaction(db) as conn:
        queue.enqueue(
            conn,
            [
                queue.NewProblem(
                    prompt=p.prompt,
                    external_id=f"{prefix}-{i}",
                    reference_answer=str(p.answer),
                    passes=passes,
                )
                for i, p in enumerate(generate_problems(seed, count, levels=(1, 2)))
            ],
        )
