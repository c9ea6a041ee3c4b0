"""Exact values of arithmetic answers without sympy: the fast path of `canonical`.

Reads the LaTeX arithmetic that most competition answers are written in (integers,
decimals, scientific notation, `\\frac`, `\\sqrt`, `\\pi`, + - * / ^, implicit products)
and evaluates it exactly in the field Q(sqrt(n) ..., pi): a value is a sum of terms
`c * sqrt(r) * pi^k` with c rational and r square-free, which is a unique form, so two
answers are equal iff their forms are. Anything outside (symbols, e, logs, sums of surds
in a denominator, huge numbers) raises `Unsupported` and is left to sympy.
Every size is capped, so the parser is fast and bounded on hostile input.
"""

import re
from fractions import Fraction
from math import gcd, isqrt

# (radicand, power of pi) -> rational coefficient
Value = dict[tuple[int, int], Fraction]

MAX_DEPTH = 48  # nesting of groups; deeper input is not a competition answer
MAX_BITS = 2048  # size of any numerator/denominator
MAX_TERMS = 8
MAX_RADICAND = 10**12
MAX_PI_POWER = 6
MAX_SCI_EXPONENT = 400  # `1e999999999` must not build a billion-digit integer
MAX_DIGITS = 600  # about MAX_BITS; also below Python's int-to-str conversion limit

_TOKEN = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|\\[A-Za-z]+|\S")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE]([+-]?\d+))?")
_SMALL_PRIMES = [p for p in range(2, 1000) if all(p % q for q in range(2, isqrt(p) + 1))]
_MUL = {"*", "\\cdot", "\\times"}
_DIV = {"/", "\\div"}
_ATOM_START = {"(", "{", "\\frac", "\\sqrt", "\\pi"}


class Unsupported(ValueError):
    """The answer is outside what this module evaluates exactly; ask sympy."""


def _check(value: Value) -> Value:
    value = {k: c for k, c in value.items() if c}
    if len(value) > MAX_TERMS:
        raise Unsupported("too many terms")
    for (rad, pie), c in value.items():
        if rad > MAX_RADICAND or abs(pie) > MAX_PI_POWER:
            raise Unsupported("radicand or pi power too large")
        if c.numerator.bit_length() > MAX_BITS or c.denominator.bit_length() > MAX_BITS:
            raise Unsupported("number too large")
    return value


def _rational(value: Value) -> Fraction:
    if not value:
        return Fraction(0)
    if set(value) != {(1, 0)}:
        raise Unsupported("expected a rational number")
    return value[(1, 0)]


def _add(a: Value, b: Value, sign: int = 1) -> Value:
    out = dict(a)
    for k, c in b.items():
        out[k] = out.get(k, Fraction(0)) + sign * c
    return _check(out)


def _mul(a: Value, b: Value) -> Value:
    out: Value = {}
    for (r1, p1), c1 in a.items():
        for (r2, p2), c2 in b.items():
            # r1, r2 square-free: sqrt(r1*r2) = g * sqrt((r1/g)*(r2/g)) with g = gcd(r1, r2)
            g = gcd(r1, r2)
            key = ((r1 // g) * (r2 // g), p1 + p2)
            out[key] = out.get(key, Fraction(0)) + c1 * c2 * g
    return _check(out)


def _inverse(a: Value) -> Value:
    if len(a) != 1:
        raise Unsupported("division by zero or by a sum")
    ((rad, pie), c) = next(iter(a.items()))
    # 1 / (c sqrt(r) pi^k) = sqrt(r) / (c r) pi^-k
    return _check({(rad, -pie): 1 / (c * rad)})


def _square_free(n: int) -> tuple[int, int]:
    """(s, r) with n = s^2 r and r square-free."""
    s, r = 1, 1
    for p in _SMALL_PRIMES:
        if p * p > n:
            break
        while n % (p * p) == 0:
            n //= p * p
            s *= p
        if n % p == 0:
            n //= p
            r *= p
    root = isqrt(n)
    if root * root == n:
        return s * root, r
    # All prime factors of n now exceed 1000, so below 10^9 it has at most two and is
    # square-free (a square was caught above).
    if n >= 10**9:
        raise Unsupported("radicand too hard to factor")
    return s, r * n


def _root(a: Value, index: int) -> Value:
    q = _rational(a)
    if q < 0:
        raise Unsupported("root of a negative number")
    if index == 2:
        s, r = _square_free(q.numerator * q.denominator)
        return _check({(r, 0): Fraction(s, q.denominator)})
    roots = [_integer_root(x, index) for x in (q.numerator, q.denominator)]
    if roots[0] ** index != q.numerator or roots[1] ** index != q.denominator:
        raise Unsupported("root is not rational")
    return {(1, 0): Fraction(roots[0], roots[1])}


def _integer_root(x: int, index: int) -> int:
    """Largest r with r**index <= x (bisection: exact for integers of any size)."""
    lo, hi = 0, 1 << (x.bit_length() // index + 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid**index <= x:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _power(base: Value, exponent: Value) -> Value:
    e = _rational(exponent)
    if e.denominator != 1:
        if e.denominator == 2:
            return _power(_root(base, 2), {(1, 0): Fraction(e.numerator)})
        raise Unsupported("fractional power")
    n = e.numerator
    if len(base) == 1 and (1, 0) in base:
        c = base[(1, 0)]
        size = max(c.numerator.bit_length(), c.denominator.bit_length())
        if size * abs(n) > MAX_BITS:
            raise Unsupported("power too large")
        if c == 0 and n < 0:
            raise Unsupported("zero to a negative power")
        return _check({(1, 0): c**n})
    if abs(n) > 12:
        raise Unsupported("power too large")
    out: Value = {(1, 0): Fraction(1)}
    for _ in range(abs(n)):
        out = _mul(out, base)
    return _inverse(out) if n < 0 else out


class _Parser:
    """Recursive descent over LaTeX tokens; one instance per answer."""

    def __init__(self, text: str) -> None:
        self.tokens = _TOKEN.findall(text)
        self.pos = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise Unsupported("unexpected end")
        self.pos += 1
        return token

    def expect(self, token: str) -> None:
        if self.take() != token:
            raise Unsupported(f"expected {token!r}")

    def take_digit(self) -> str:
        """First digit of a number token: TeX reads `\\frac12` as 1 over 2, `^23` as ^2 then 3."""
        token = self.take()
        if len(token) > 1 and token[0].isdecimal():
            self.pos -= 1
            self.tokens[self.pos] = token[1:]
            return token[0]
        return token

    def parse(self) -> Value:
        value = self.expr()
        if self.peek() is not None:
            raise Unsupported(f"unexpected {self.peek()!r}")
        return value

    def expr(self) -> Value:
        value = self.unary()
        while self.peek() in ("+", "-"):
            sign = 1 if self.take() == "+" else -1
            value = _add(value, self.term(), sign)
        return value

    def unary(self) -> Value:
        if self.peek() == "-":
            self.take()
            return _mul({(1, 0): Fraction(-1)}, self.term())
        if self.peek() == "+":
            self.take()
        return self.term()

    def term(self) -> Value:
        value = self.power()
        while True:
            token = self.peek()
            if token in _MUL:
                self.take()
                value = _mul(value, self.power())
            elif token in _DIV:
                self.take()
                value = _mul(value, _inverse(self.power()))
            elif token is not None and (token in _ATOM_START or token[0].isdecimal()):
                if token[0].isdecimal() and self.tokens[self.pos - 1][0].isdecimal():
                    raise Unsupported("two numbers side by side")  # `7 7`: not a product
                value = _mul(value, self.power())
            else:
                return value

    def power(self) -> Value:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            base = _power(base, self.argument(signed=True))
        return base

    def argument(self, signed: bool = False) -> Value:
        """A macro argument or superscript: a brace group or a single token."""
        token = self.peek()
        if token == "{":
            self.take()
            value = self.expr()
            self.expect("}")
            return value
        if signed and token == "-":
            self.take()
            return _mul({(1, 0): Fraction(-1)}, self.argument())
        if token is not None and token[0].isdecimal():
            return {(1, 0): Fraction(self.take_digit())}
        return self.atom()

    def mixed_number(self, whole: Value) -> Value:
        """`2\\frac{1}{2}` is the mixed number 5/2 when the fraction is proper, else a product."""
        self.take()
        fraction = _mul(self.argument(), _inverse(self.argument()))
        if set(fraction) == {(1, 0)} and 0 < fraction[(1, 0)] < 1:
            return _add(whole, fraction)
        return _mul(whole, fraction)

    def atom(self) -> Value:
        # Every recursion (a group, `\frac\frac...`, `\sqrt\sqrt...`) passes through here.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Unsupported("nested too deeply")
        value = self._atom()
        self.depth -= 1
        return value

    def _atom(self) -> Value:
        token = self.take()
        if token[0].isdecimal() or token[0] == ".":
            exp = _NUMBER.fullmatch(token)
            if (
                exp is None
                or len(token) > MAX_DIGITS
                or (exp.group(1) and abs(int(exp.group(1))) > MAX_SCI_EXPONENT)
            ):
                raise Unsupported(f"bad number {token!r}")
            value = _check({(1, 0): Fraction(token)})
            if self.peek() == "\\frac" and token.isdecimal():
                return self.mixed_number(value)
            return value
        if token in ("(", "{"):
            value = self.expr()
            self.expect(")" if token == "(" else "}")
            return value
        if token == "\\frac":
            num = self.argument()
            return _mul(num, _inverse(self.argument()))
        if token == "\\sqrt":
            index = 2
            if self.peek() == "[":
                self.take()
                index_value = _rational(self.expr())
                self.expect("]")
                if index_value.denominator != 1 or not 2 <= index_value <= 64:
                    raise Unsupported("bad root index")
                index = int(index_value)
            return _root(self.argument(), index)
        if token == "\\pi":
            return {(1, 1): Fraction(1)}
        raise Unsupported(f"unsupported token {token!r}")


def _format_coefficient(c: Fraction) -> str:
    return str(c.numerator) if c.denominator == 1 else f"{c.numerator}/{c.denominator}"


def format_value(value: Value) -> str:
    """The unique text of a value: its terms sorted, e.g. `1/2*sqrt(3)` or `-1 + sqrt(2)`."""
    if not value:
        return "0"
    parts = []
    for (rad, pie), c in sorted(value.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        factors = [] if (c == 1 and (rad, pie) != (1, 0)) else [_format_coefficient(c)]
        if rad != 1:
            factors.append(f"sqrt({rad})")
        if pie:
            factors.append("pi" if pie == 1 else f"pi^{pie}")
        parts.append("*".join(factors))
    return " + ".join(parts)


def exact_value(text: str) -> Value:
    """Exact value of a cleaned LaTeX arithmetic answer; raises `Unsupported` outside scope."""
    if not text:
        raise Unsupported("empty answer")
    try:
        return _Parser(text).parse()
    except Unsupported:
        raise
    except (ArithmeticError, ValueError) as exc:  # hostile input past a parser gap: ask sympy
        raise Unsupported(f"{type(exc).__name__}: {exc}") from None
