r"""Full completions in the styles real models write, with what extract() must read.

Loaded by path (the test folders are not packages). Each EXTRACT row is
(style, completion, expected answer or None); each VOTE is one problem's rollouts with the
expected outcome: VOTES[name] = (completions, label, cluster per rollout (0 = winner,
None = no answer)). Written for ttrl, independently of any other grader's test suite.
"""

WORK = (
    "We set up the equation from the statement and simplify it step by step. "
    "Substituting back confirms that the value satisfies every condition.\n\n"
)
THINK_DRAFT = (
    "<think>\nLet me try small cases first. If it were \\boxed{6} the second condition fails, "
    "so that draft is wrong. Recomputing carefully gives another value.\n</think>\n\n"
)
NEXT_QUESTION = (
    "\n\nQuestion: Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes "
    "of babysitting. How much did she earn?\nAnswer: Weng earns 12/60 = $0.2 per minute.\n"
    "Working 50 minutes, she earned 0.2 x 50 = $10.\n#### 10"
)

EXTRACT: list[tuple[str, str, str | None]] = [
    # Qwen2.5-Math: a box at the end
    ("qwen", WORK + r"Therefore, the final answer is $\boxed{\dfrac{3}{4}}$.", r"\dfrac{3}{4}"),
    ("qwen", WORK + r"So $x = \boxed{-\frac{1}{2}}$.", r"-\frac{1}{2}"),
    ("qwen", WORK + r"The area is $\boxed{15\mbox{ cm}^2}$.", r"15\mbox{ cm}^2"),
    ("qwen", WORK + r"The answer is \(\boxed{\$1,\!250}\).", r"\$1,\!250"),
    (
        "qwen",
        WORK + r"Hence \[\boxed{\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}}\]",
        r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
    ),
    ("qwen cut off", WORK + r"Therefore the answer is $\boxed{\frac{3}{", None),
    ("qwen cut off", WORK + r"First \boxed{2}. Then the total is \boxed{\frac{1}{2", None),
    # DeepSeek-R1: boxes inside <think> are drafts
    ("r1", THINK_DRAFT + WORK + r"The answer is $\boxed{12}$.", "12"),
    ("r1", THINK_DRAFT + "**Answer:** 12", "12"),
    ("r1", THINK_DRAFT + "The number of ways is **12**.\n\n**Final Answer**\n12", "12"),
    ("r1 cut off", "<think>\nLet me try. So maybe \\boxed{12}? Hmm, wait, but the", None),
    ("r1 cut off", "<think>\n" + WORK * 3, None),
    ("r1 nothing after think", THINK_DRAFT, None),
    ("r1 no opening tag", "Let me think about it. \\boxed{5} maybe.\n</think>\n\\boxed{7}", "7"),
    # Minerva / Llama
    ("minerva", WORK + "Final Answer: The final answer is $7.78$. I hope it is correct.", "7.78"),
    ("minerva", WORK + "Final Answer: The final answer is 7.78. I hope it is correct.", "7.78"),
    ("minerva", WORK + "Final Answer: The largest $n$ is 34.", "34"),
    (
        "minerva",
        WORK + "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.\n"
        "Note: the solution above assumes $x > 0$.",
        r"\frac{1}{2}",
    ),
    (
        "minerva after a box",
        WORK + r"The interest is $0.05 \cdot 10{,}200 / 2 = \boxed{255}$. "
        "So he has $10,455. Final Answer: The final answer is $10,455$. I hope it is correct.",
        "10,455",
    ),
    # GSM8K few-shot base model: the first #### is the answer, the rest is the next question
    (
        "gsm8k",
        "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips.\n#### 72"
        + NEXT_QUESTION,
        "72",
    ),
    ("gsm8k", "Total is 1,000 + 250 = 1,250 dollars.\n#### 1,250", "1,250"),
    # "the answer is"
    ("phrase", WORK + "So the answer is 42.", "42"),
    ("phrase", WORK + "The answer is: $\\frac{\\sqrt{3}}{2}$", r"\frac{\sqrt{3}}{2}"),
    ("phrase", WORK + "Thus $x \\ge 5$ is the solution.", r"x \ge 5"),
    # several boxes that are one answer
    ("boxes", WORK + r"The integers are $\boxed{-2}$ and $\boxed{1}$.", "-2, 1"),
    ("boxes", WORK + r"$\boxed{k = 45} \quad \text{and} \quad \boxed{n = 2}$", "k = 45, n = 2"),
    ("boxes", WORK + r"So $x = \boxed{3}$, $y = \boxed{4}$.", "x = 3, y = 4"),
    ("boxes", WORK + r"\boxed{1}, \boxed{2}, \boxed{3}", "1, 2, 3"),
    ("boxes, not one answer", WORK + r"We get \boxed{3}. Wait, that is wrong: \boxed{4}", "4"),
    ("boxes, same twice", WORK + "\\boxed{5}.\n\n**Final Answer**\n\\boxed{5}", "5"),
    ("boxes, two sentences", WORK + "So \\boxed{3}.\n\\boxed{4}", "4"),
    # chat template: the next turn is not this answer
    ("chat tail", WORK + "\\boxed{5}<|im_end|>\n<|im_start|>user\nNow find \\boxed{9}", "5"),
    ("chat tail", WORK + "Therefore there are 12 sequences. <|im_start|>user", "12 sequences"),
    # concluding sentences and bare answers
    (
        "conclusion",
        WORK + "So, the ordered pair $(x, y)$ that solves the system is $(7, 6)$.",
        "(7, 6)",
    ),
    ("conclusion", WORK + "Therefore, the error increases by 100%.", "100%"),
    ("bare", "$28\\%$", "28\\%"),
    ("bare", "x \\in [-2,7]", "x \\in [-2,7]"),
    ("bare", "no final answer given here", None),
    ("bare", "I answered 4", None),
    ("bare", "Answer \\[ \n 9 \n \\]", "9"),  # display math may span lines
    ("ramble, no answer stated", "\n3+4=7\n7*2=14", None),  # cut off before its box
    # multiple choice
    ("choice", WORK + r"The correct option is $\boxed{\text{(C)}}$.", r"\text{(C)}"),
    ("choice", WORK + "The answer is (C) 12.", "(C) 12"),
]

TH = THINK_DRAFT
VOTES: dict[str, tuple[list[str], str | None, list[int | None]]] = {
    "fraction in four styles": (
        [
            WORK + r"Therefore, the final answer is $\boxed{\dfrac{3}{4}}$.",
            TH + r"So the probability is \boxed{0.75}.",
            WORK + r"Final Answer: The final answer is $\frac{3}{4}$. I hope it is correct.",
            "<think>\nSo maybe \\boxed{\\frac{3}{4}}? Let me double-check the",
            WORK + r"\boxed{\frac{4}{3}}",
            "3/4 of 1 is 0.75.\n#### 0.75" + NEXT_QUESTION,
        ],
        r"\frac{3}{4}",
        [0, 0, 0, None, 1, 0],
    ),
    "several boxes form a set": (
        [
            WORK + r"The roots are $\boxed{-2}$ and $\boxed{1}$.",
            WORK + r"So $n = \boxed{1, -2}$.",
            WORK + r"\boxed{\{-2, 1\}}",
            WORK + r"The only root is \boxed{1}.",
            WORK + r"$x_1 = \boxed{1}$, $x_2 = \boxed{-2}$",
        ],
        "-2, 1",
        [0, 0, 0, 1, 0],
    ),
    "named boxes": (
        [
            WORK + r"$\boxed{k = 45} \quad \text{and} \quad \boxed{n = 2}$",
            WORK + r"\boxed{n = 2, k = 45}",
            WORK + r"\boxed{2}",
            WORK + r"\boxed{k = 2, n = 45}",
        ],
        "k = 45, n = 2",
        [0, 0, 1, 2],
    ),
    "thousands separators": (
        [
            WORK + r"The price is \(\boxed{\$1,\!250}\).",
            WORK + "Final Answer: The final answer is $1250$. I hope it is correct.",
            WORK + r"\boxed{1{,}250}",
            WORK + r"\boxed{1, 250}",  # a comma and a space: the list {1, 250}
            "So 1,000 + 250 = 1,250.\n#### 1,250",
        ],
        "1,250",
        [0, 0, 0, 1, 0],
    ),
    "degenerate values stay apart": (
        [
            WORK + r"\boxed{\frac{1}{0}}",
            WORK + r"\boxed{\frac{5}{0}}",
            WORK + r"\boxed{\text{undefined}}",
            WORK + r"\boxed{0/0}",
            WORK + r"\boxed{12:00}",
            WORK + r"\boxed{1:00}",
            WORK + r"\boxed{\text{division by zero}}",
        ],
        r"\frac{1}{0}",
        [0, 1, 2, 3, 4, 5, 6],
    ),
    "clock times": (
        [
            WORK + r"They meet at \boxed{1:00 \text{ PM}}.",
            WORK + "The answer is 13:00.",
            WORK + r"\boxed{1:00}",
            WORK + r"\boxed{1:00\ \text{p.m.}}",
        ],
        r"1:00 \text{ PM}",
        [0, 0, 1, 0],
    ),
    "percent is its number": (
        [
            WORK + r"\boxed{25\%}",
            WORK + "Final Answer: The final answer is $25$. I hope it is correct.",
            WORK + r"\boxed{\frac{1}{4}}",
            WORK + r"\boxed{0.25}",
            WORK + r"\boxed{25\text{ percent}}",
        ],
        r"25\%",
        [0, 0, 1, 1, 0],
    ),
    "multiple choice": (
        [
            WORK + r"\boxed{\text{(C)}}",
            WORK + "The answer is (C) 12.",
            WORK + "**Answer:** C",
            WORK + "So the answer is Option C.",
            WORK + r"\boxed{B}",
        ],
        r"\text{(C)}",
        [0, 0, 0, 0, 1],
    ),
    "inequality and interval": (
        [
            WORK + r"\boxed{x \le 4}",
            WORK + r"$\boxed{(-\infty, 4]}$",
            WORK + r"Final Answer: The final answer is $x \leq 4$. I hope it is correct.",
            WORK + r"\boxed{x < 4}",
            WORK + r"\boxed{4 \geq x}",
        ],
        r"x \le 4",
        [0, 0, 0, 1, 0],
    ),
    "repeating decimal": (
        [
            WORK + r"\boxed{0.\overline{3}}",
            WORK + r"\boxed{\frac13}",
            WORK + r"\boxed{0.33}",
            WORK + r"\boxed{0.\overline{33}}",
        ],
        r"0.\overline{3}",
        [0, 0, 1, 0],
    ),
    "no solution is the empty set": (
        [
            WORK + r"\boxed{\text{No solution}}",
            WORK + r"\boxed{\emptyset}",
            WORK + r"The equation has no real roots, so the answer is $\varnothing$.",
            WORK + r"\boxed{0}",
        ],
        r"\text{No solution}",
        [0, 0, 0, 1],
    ),
    "gsm8k base model goes on": (
        [
            "Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips.\n#### 72"
            + NEXT_QUESTION,
            WORK + "The answer is 72.",
            "#### 72" + NEXT_QUESTION,
            "She sold 10 clips.\n#### 10" + NEXT_QUESTION,
        ],
        "72",
        [0, 0, 0, 1],
    ),
    "r1 drafts and cut-offs": (
        [
            TH + "**Answer:** 12",
            TH + r"The answer is $\boxed{12}$.",
            "<think>\nSo it should be \\boxed{12}, but let me double check the",
            TH,
            TH + r"\boxed{6}",
        ],
        "12",
        [0, 0, None, None, 1],
    ),
    "units": (
        [
            WORK + r"The area is $\boxed{15\mbox{ cm}^2}$.",
            WORK + r"The area is $\boxed{15 \text{ cm}^2}$.",
            WORK + "Final Answer: The final answer is $15$ square centimeters.",
            WORK + r"\boxed{150}",
            WORK + r"The distance is $\boxed{125\textnormal{ miles}}$.",
        ],
        r"15\mbox{ cm}^2",
        [0, 0, 0, 1, 2],
    ),
    "minerva sentences and late final answers": (
        [
            WORK + "Final Answer: The largest $n$ is 34.",
            WORK + r"\boxed{34}",
            WORK + r"First \boxed{17}, doubled. Final Answer: The final answer is $34$. "
            "I hope it is correct.",
            WORK + r"\boxed{17}",
        ],
        "34",
        [0, 0, 0, 1],
    ),
}

# Symbolic answers: their keys come from the sympy worker processes.
SYMBOLIC_VOTE = (
    [
        WORK + r"\boxed{(x+1)^2}",
        WORK + r"\boxed{x^2+2x+1}",
        WORK + "Final Answer: The final answer is $x^{2} + 2x + 1$. I hope it is correct.",
        WORK + r"\boxed{x^2+1}",
        TH + r"So $f(x) = \boxed{1 + 2x + x^2}$.",
    ],
    "(x+1)^2",
    [0, 0, 0, 1, 0],
)

# Groups of answers that are each the same answer, in the spellings models use.
SAME = [
    ["2 3/4", r"2\frac{3}{4}", "11/4", "2.75"],
    [r"\$1,\!250", "1250", "1{,}250", r"1\,250", "1 250", "1,250"],
    [r"x \le 4", r"(-\infty, 4]", r"4 \geq x", r"x \in (-\infty, 4]", "-x >= -4"],
    [r"\pm 2", r"\{-2, 2\}", "2, -2"],
    ["1:00 PM", "13:00", r"1:00 \text{ p.m.}"],
    ["No solution", r"\emptyset", r"\varnothing", "no real solutions"],
    [r"0.\overline{3}", r"\frac13", r"0.\overline{33}", "0.333...", r"0.33\ldots"],
    ["x = 1, y = 2", "y = 2, x = 1"],
    ["x_1 = 2, x_2 = 3", "3, 2", r"\{2,3\}"],
    ["y = 2x + 1", "2x - y + 1 = 0"],
    [r"1 \le |z| \le 2", r"[-2,-1] \cup [1,2]"],
    [r"x < -1 \text{ or } x > 2", r"(-\infty,-1)\cup(2,\infty)", r"x > 2 \lor x < -1"],
    [r"x = 5+5+1 = 11", "11", r"x \approx 11"],
]

# Answers that are all different from each other: no two may share a key or be equivalent.
DISTINCT = [
    "3 cm by 4 cm",
    "6 cm by 2 cm",
    "2 3/4",
    "23/4",
    "1 2",
    "12",
    "11 7/6",
    "77/6",
    "a_1 = 2, a_2 = 3",
    "a_1 = 3, a_2 = 2",
    "3.14...",
    "3.14",
    r"1, 2, 3, \ldots",
    "1, 2, 3",
    "x = 3 or x = 5",
    "5",
    r"x < -1 \text{ or } x > 2",
    r"x \le -1 \text{ or } x \ge 2",
    "12:00",
    "1:00",
    r"\frac{1}{0}",
    r"\frac{5}{0}",
    "0/0",
    r"\text{undefined}",
    "nan",
    "zoo",
    "32, 349",
    "32349",
    "1, 125",
    "1125",
    "1,22",
    "1.22",
    r"25\%",
    r"\frac14",
    "0.33",
    r"0.\overline{3}",
    r"\emptyset",
    "0",
    r"x \le 4",
    r"x < 4",
    r"(4, \infty)",
    "[4, \\infty)",
    "(1,2)",
    "[1,2]",
    r"\{1,2\}",
    "x = 1, y = 2",
    "x = 2, y = 1",
    "1:00 PM",
    "A",
    "B",
    r"\pm 2",
    "2",
    r"\frac{3}{4}",
    r"\frac{4}{3}",
    r"1 - \frac{1}{e}",
    r"1 + \frac{1}{e}",
]
