"""What users were served over a run: the accuracy of every problem's current answer, after
each model version's votes, graded against the hidden references (a demo database).

The daemon's answer to a problem is its newest label (``v_answers``); this replays
``v_answer_history`` in time order and prints that accuracy once every version's votes are
in, with the best so far, and at the end the final and best figures and the largest drop
below the best. The collapse guard's promise is a small drop (issue 18: within 2 points).

    .venv/bin/python benchmarks/answers_over_time.py --db sqlite:////tmp/long/ttrl.db
"""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from ttrl.dashboards import views
from ttrl.db import make_engine, transaction


def replay(rows: list[tuple[int, int, bool | None]]) -> list[tuple[int, float]]:
    """``(problem_id, model_version, correct)`` rows in time order -> ``(version, accuracy of
    the current answers)`` after each run of one version's votes, once every problem seen
    in the run has an answer."""
    problems = {problem for problem, _, _ in rows}
    current: dict[int, bool] = {}
    out: list[tuple[int, float]] = []
    for i, (problem, version, correct) in enumerate(rows):
        current[problem] = bool(correct)
        last_of_version = i + 1 == len(rows) or rows[i + 1][1] != version
        if last_of_version and len(current) == len(problems):
            out.append((version, sum(current.values()) / len(current)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="SQLAlchemy URL of the run's database")
    ap.add_argument("--every", type=int, default=10, help="print every K-th version")
    args = ap.parse_args()
    h = views.answer_history.c
    engine = make_engine(args.db)
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            select(h.problem_id, h.model_version, h.correct)
            .where(h.correct.is_not(None))
            .order_by(h.created_at, h.problem_id)
        ).all()
    engine.dispose()
    series = replay([tuple(r) for r in rows])
    if not series:
        raise SystemExit(f"{args.db}: no graded votes cover every problem yet")
    best = 0.0
    drop = 0.0
    for i, (version, accuracy) in enumerate(series):
        best = max(best, accuracy)
        drop = max(drop, best - accuracy)
        if i % args.every == 0 or i + 1 == len(series):
            print(f"version {version:5d}  answers {accuracy:.3f}  best so far {best:.3f}")
    final = series[-1][1]
    print(
        json.dumps(
            {
                "final": round(final, 4),
                "best": round(best, 4),
                "final_below_best": round(best - final, 4),
                "largest_drop": round(drop, 4),
                "versions": len(series),
            }
        )
    )


if __name__ == "__main__":
    main()
