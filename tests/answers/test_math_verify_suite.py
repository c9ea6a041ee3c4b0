"""ttrl on Math-Verify's regression suite (benchmarks/math_verify_agreement.py prints the
comparison with math-verify itself; math-verify matches every expected verdict there)."""

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "benchmarks" / "math_verify_agreement.py"
AGREEMENT = runpy.run_path(str(BENCH))
CASES = json.loads((BENCH.parent / "math_verify_cases.json").read_text())["cases"]
DEFAULT = [c for c in CASES if AGREEMENT["is_default"](c)]


pytestmark = pytest.mark.usefixtures("patient_pool")


def test_agreement_and_no_false_merges():
    verdicts = {(c["gold"], c["pred"]): c["expected"] for c in CASES}
    right, false_merges = 0, []
    for case in DEFAULT:
        ours = AGREEMENT["ttrl_verdict"](case)[0]
        right += ours == bool(case["expected"])
        mirror = verdicts.get((case["pred"], case["gold"]))
        if ours and not case["expected"] and mirror in (None, 0):
            false_merges.append((case["gold"][:60], case["pred"][:60]))
    assert len(DEFAULT) == 267
    assert right / len(DEFAULT) >= 0.95, f"{right}/{len(DEFAULT)}"
    assert false_merges == []
