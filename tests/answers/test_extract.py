"""extract(): the final answer of a completion."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttrl.answers import extract

CASES = [
    (r"so the answer is \boxed{5}.", "5"),
    (r"first \boxed{3}, corrected: \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}"),
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),  # escaped braces inside a box
    (r"\boxed{\left(1, \frac{2}{3}\right)}", r"\left(1, \frac{2}{3}\right)"),
    (r"\fbox{x^{2}}", "x^{2}"),
    (r"$\boxed 7$", "7"),
    (r"\boxed{ 12 }", "12"),
    (r"\boxed{\frac{1}{2}", None),  # cut off inside the last box
    (r"\boxed{3} then \boxed{\frac{1}{2", None),  # the last box is the answer, and it is cut
    (r"\boxed{}", None),
    ("Natalia sold 48 clips.\n#### 72", "72"),
    ("#### 1,000", "1,000"),
    ("The final answer is 42.", "42"),
    ("The final answer is $\\frac{1}{2}$. I hope it is correct.", r"\frac{1}{2}"),
    ("Answer: **B**", "B"),
    ("To answer this, note 5. The answer is 7.", "7"),
    ("answer: \\(x = 3\\)", "x = 3"),
    ("no final answer given here", None),
    ("I answered 4", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_extract(text, expected):
    assert extract(text) == expected


def test_box_wins_over_phrases():
    assert extract("The answer is 3. Actually \\boxed{4}") == "4"


def test_hostile_sizes_are_linear():
    nested = "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}"
    assert extract(nested) == "{" * 10_000 + "1" + "}" * 10_000
    assert extract("\\boxed{" + "{" * 10_000) is None  # never closes
    assert extract("x" * 50_000 + "\\boxed{" + "9" * 50_000 + "}") == "9" * 50_000


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("\\boxedfbx{}$#:answerAFinal 0123.\n()")) | st.characters(),
        max_size=200,
    )
)
def test_extract_never_raises(text):
    result = extract(text)
    assert result is None or (isinstance(result, str) and result.strip() == result and result)


@pytest.mark.parametrize(
    "text",
    [
        "$" * 50_000,
        "\\(" * 25_000,
        "Therefore x. " * 8_000,
        "Final Answer: " * 6_000,
        "the answer is " * 6_000,
        "\\boxed{1} and " * 10_000,
        "<think>" * 10_000 + "</think>" + "#### " * 10_000,
        "Final Answer: " + "7." * 30_000,
        "answer: " + "\\(x " * 20_000,
    ],
    ids=lambda t: repr(t[:16]),
)
def test_hostile_statements_are_linear(text):
    start = time.perf_counter()
    result = extract(text)
    assert time.perf_counter() - start < 0.5
    assert result is None or (result and result == result.strip())


@pytest.mark.parametrize("text", ["no idea", "not sure", "I don't know", "hmm, tricky"])
def test_a_short_phrase_without_a_number_is_no_answer(text: str) -> None:
    # A vote for "no idea" would make it a pseudo-label and train the model to say it.
    assert extract(text) is None


@pytest.mark.parametrize(
    ("text", "answer"),
    [("Evelyn", "Evelyn"), ("B", "B"), ("no solution", "no solution")],
)
def test_a_lone_word_or_an_answer_phrase_is_an_answer(text: str, answer: str) -> None:
    assert extract(text) == answer
