"""Majority vote over the final answers of N rollouts: the TTRL pseudo-label and rewards.

TTRL (Zuo et al. 2025, "Test-Time Reinforcement Learning", majority-voting reward): the
label is the most frequent answer among the N samples, and a rollout's reward is 1 if its
answer equals the label, else 0. Here "equal" means equivalent: answers are grouped by
`canonical` key, then clusters whose keys are not exact are merged when math-verify's
`verify` holds both ways (a few calls among the distinct keys, never among N rollouts).

Tie policy: among clusters of equal size the one whose first member appears first wins,
so a vote is a pure function of the ordered answers; `Vote.tie` flags it.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import combinations

from ttrl.answers.bounded import SymbolicUnavailable, get_config, pool
from ttrl.answers.canonical import canonical
from ttrl.answers.clean import clean, display
from ttrl.answers.keys import MERGEABLE_KINDS, Key


@dataclass(frozen=True)
class Vote:
    """Outcome of one vote over N rollouts (N counts rollouts with no answer too). A
    :func:`pooled_vote` counts earlier answers in N too, while ``keys`` and ``membership``
    cover this pass's rollouts only."""

    label: str | None  # the winning cluster's most frequent spelling (see `_label`)
    label_key: Key | None
    count: int  # rollouts in the winning cluster
    n: int
    n_distinct: int  # clusters after merging
    tie: bool  # another cluster is as large as the winner
    keys: tuple[Key | None, ...]  # per rollout: its own canonical key (None: no answer)
    membership: tuple[int | None, ...]  # per rollout: cluster index (0 = winner), or None
    sizes: tuple[int, ...]  # rollouts per cluster, by cluster index (winner first)

    @property
    def share(self) -> float:
        """Vote share (TTRL's majority ratio): count / N."""
        return self.count / self.n if self.n else 0.0

    @property
    def rewards(self) -> list[float]:
        """1.0 for rollouts in the winning cluster, 0.0 otherwise (no answer: 0.0)."""
        return [1.0 if m == 0 else 0.0 for m in self.membership]


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _verify(a: str, b: str) -> bool:
    try:
        return bool(pool().call("verify", *sorted((a, b))))
    except SymbolicUnavailable:
        return False


def _needs_check(a: Key, b: Key) -> bool:
    """Only an "expr" key can equal a different key; exact keys are complete among themselves."""
    return (a.kind == "expr" or b.kind == "expr") and {a.kind, b.kind} <= MERGEABLE_KINDS


def _merge(keys: list[Key], spellings: list[str], sizes: list[int]) -> list[int]:
    """Union-find root per key group, merging groups whose spellings verify as equivalent."""
    parent = list(range(len(keys)))
    budget = get_config().max_merge_checks
    by_size = sorted(range(len(keys)), key=lambda g: -sizes[g])
    for i, j in combinations(by_size, 2):
        if budget <= 0:
            break
        if not _needs_check(keys[i], keys[j]) or _find(parent, i) == _find(parent, j):
            continue
        budget -= 1
        if _verify(spellings[i], spellings[j]):
            parent[_find(parent, j)] = _find(parent, i)
    return [_find(parent, g) for g in range(len(keys))]


def _label(spellings: list[str]) -> str:
    """The winning cluster's label: one of its spellings (as extracted), the one written most
    often up to layout (`\\dfrac` = `\\frac`, spacing, `\\left`), in its cleanest form (the one
    equal to its `display`), first seen on ties."""
    forms = {a: display(a) for a in dict.fromkeys(spellings)}  # once per distinct spelling
    shown = [forms[a] for a in spellings]
    counts = Counter(shown)
    best = max(counts, key=lambda d: (counts[d], -shown.index(d)))
    candidates = [a for a, d in zip(spellings, shown, strict=True) if d == best]
    return next((a for a in candidates if a == best), candidates[0])


def vote(answers: Sequence[str | None]) -> Vote:
    r"""Majority vote over extracted answers (None or blank: the rollout gave no answer).

    >>> v = vote([r"\frac{1}{2}", "0.5", "2", None])
    >>> (v.label, v.count, v.share, v.rewards)
    ('\\frac{1}{2}', 2, 0.5, [1.0, 1.0, 0.0, 0.0])
    """
    n = len(answers)
    key_of: dict[str, Key] = {}
    keys: list[Key | None] = []
    for i, answer in enumerate(answers):
        if answer is not None and not isinstance(answer, str):
            raise TypeError(
                f"vote() takes answer strings or None; answers[{i}] is "
                f"{type(answer).__name__} {answer!r}: pass extract()'s results"
            )
        if answer is None or not answer.strip():
            keys.append(None)
            continue
        if answer not in key_of:
            key_of[answer] = canonical(answer)
        keys.append(key_of[answer])

    # Key groups in order of first appearance, with the first spelling as representative.
    group_of: dict[Key, int] = {}
    spellings: list[str] = []
    sizes: list[int] = []
    for answer, key in zip(answers, keys, strict=True):
        if key is None or answer is None:
            continue
        if key not in group_of:
            group_of[key] = len(spellings)
            spellings.append(clean(answer))
            sizes.append(0)
        sizes[group_of[key]] += 1
    group_keys = list(group_of)
    roots = _merge(group_keys, spellings, sizes) if len(group_keys) > 1 else [0] * len(sizes)

    cluster_size: Counter[int] = Counter()
    for group, root in enumerate(roots):
        cluster_size[root] += sizes[group]
    # Winner: largest cluster; ties go to the cluster seen first (its root is its first group).
    ranked = sorted(cluster_size, key=lambda root: (-cluster_size[root], root))
    index = {root: i for i, root in enumerate(ranked)}
    membership = tuple(None if k is None else index[roots[group_of[k]]] for k in keys)
    if not ranked:
        return Vote(None, None, 0, n, 0, False, tuple(keys), membership, ())
    winner = ranked[0]
    won = [a for a, m in zip(answers, membership, strict=True) if m == 0 and a is not None]
    label = _label(won)
    return Vote(
        label=label,
        label_key=group_keys[winner],
        count=cluster_size[winner],
        n=n,
        n_distinct=len(ranked),
        tie=len(ranked) > 1 and cluster_size[ranked[1]] == cluster_size[winner],
        keys=tuple(keys),
        membership=membership,
        sizes=tuple(cluster_size[root] for root in ranked),
    )


def pooled_vote(answers: Sequence[str | None], earlier: Sequence[str | None]) -> Vote:
    r"""`vote` over this pass's ``answers`` and the ``earlier`` answers of the same problem
    (its previous passes): the label and the counts (``count``, ``n``, ``share``, ``sizes``,
    ``n_distinct``) are the pooled vote's; the per-rollout fields (``keys``,
    ``membership``, hence ``rewards``) are this pass's rollouts'. Ties go to the cluster this
    pass wrote first.

    >>> v = pooled_vote(["7", "9"], ["9", "9", "7"])
    >>> (v.label, v.count, v.n, v.rewards)
    ('9', 3, 5, [0.0, 1.0])
    """
    pooled = vote([*answers, *earlier])
    mine = len(answers)
    return replace(pooled, keys=pooled.keys[:mine], membership=pooled.membership[:mine])


def equivalent(a: str | None, b: str | None) -> bool:
    """Whether two answers are equivalent (grading against a reference, dashboards).

    Same machinery as `vote`: equal keys, else math-verify both ways when either key is a
    symbolic "expr". None (no answer) is equivalent to nothing.
    """
    if a is None or b is None or not a.strip() or not b.strip():
        return False
    ka, kb = canonical(a), canonical(b)
    if ka == kb:
        return True
    return _needs_check(ka, kb) and _verify(clean(a), clean(b))


__all__ = ["Vote", "equivalent", "pooled_vote", "vote"]
