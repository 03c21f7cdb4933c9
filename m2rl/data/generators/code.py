"""Programming tasks read from stdin and print to stdout, with unit tests.

Each template has a reference solution (source text): the tests' expected outputs are
that solution's outputs, computed here in-process (our own trusted code), and the SFT
response is that solution in a fenced block, so it passes by construction.
"""
from __future__ import annotations

import contextlib
import io
import random

PROMPT = ("{statement}\n\nWrite a Python 3 program that reads the input from standard input "
          "and prints the answer to standard output. Give the program in one ```python code block.")
_NUMS = "The input is one line of space-separated integers."

# (statement with {k}, solution with {k}, input kind, range of k)
TEMPLATES = [
    (f"{_NUMS} Print their sum multiplied by {{k}}.",
     "xs = list(map(int, input().split()))\nprint(sum(xs) * {k})", "ints", (2, 400)),
    (f"{_NUMS} Print how many of them are divisible by {{k}}.",
     "xs = list(map(int, input().split()))\nprint(sum(1 for x in xs if x % {k} == 0))", "ints", (2, 12)),
    (f"{_NUMS} Print the largest one plus {{k}}.",
     "xs = list(map(int, input().split()))\nprint(max(xs) + {k})", "ints", (1, 400)),
    (f"{_NUMS} Print the product of all of them modulo {{k}}.",
     "xs = list(map(int, input().split()))\np = 1\nfor x in xs:\n    p = p * x % {k}\nprint(p)", "ints", (2, 1000)),
    (f"{_NUMS} Print them sorted in ascending order, each increased by {{k}}, separated by spaces.",
     "xs = sorted(map(int, input().split()))\nprint(' '.join(str(x + {k}) for x in xs))", "ints", (0, 400)),
    (f"{_NUMS} Print the sum of the squares of the numbers greater than {{k}}.",
     "xs = list(map(int, input().split()))\nprint(sum(x * x for x in xs if x > {k}))", "ints", (-50, 90)),
    ("The input is one integer n. Print the n-th Fibonacci number modulo {k} (F(0) = 0, F(1) = 1).",
     "n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, (a + b) % {k}\nprint(a % {k})", "int", (2, 1000)),
    ("The input is one integer n. Print n! modulo {k}.",
     "n = int(input())\nf = 1\nfor i in range(2, n + 1):\n    f = f * i % {k}\nprint(f % {k})", "int", (2, 1000)),
    ("The input is one integer n. Print the sum of i * {k} for i from 1 to n.",
     "n = int(input())\nprint(sum(i * {k} for i in range(1, n + 1)))", "int", (1, 400)),
    ("The input is one integer n. Print YES if n + {k} is a prime number, otherwise NO.",
     "n = int(input()) + {k}\nprint('YES' if n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1)) else 'NO')", "int", (0, 400)),
    ("The input is one line of text. Print the text repeated {k} times, separated by single spaces.",
     "s = input()\nprint(' '.join([s] * {k}))", "word", (2, 6)),
    ("The input is one line of text. Print the number of vowels (a, e, i, o, u, either case) plus {k}.",
     "s = input()\nprint(sum(c in 'aeiouAEIOU' for c in s) + {k})", "text", (0, 400)),
    ("The input is one line of text. Print the text reversed, then a space, then the number {k}.",
     "s = input()\nprint(s[::-1], {k})", "text", (0, 400)),
    ("The input is one line of words. Print the words whose length is at least {k}, in order, separated by spaces (print an empty line if there are none).",
     "ws = input().split()\nprint(' '.join(w for w in ws if len(w) >= {k}))", "text", (2, 7)),
]
_WORDS = "alpha beta gamma delta river stone cloud tiger apple music orange python zebra quiet".split()


def _input(kind: str, r: random.Random) -> str:
    if kind == "ints":
        return " ".join(str(r.randint(-50, 99)) for _ in range(r.randint(1, 12)))
    if kind == "int":
        return str(r.randint(0, 60))
    if kind == "word":
        return r.choice(_WORDS)
    return " ".join(r.choice(_WORDS) for _ in range(r.randint(1, 8)))


def run_reference(solution: str, stdin: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        stream = io.StringIO(stdin)
        exec(compile(solution, "<reference>", "exec"), {"input": lambda: stream.readline().rstrip("\n")})
    return out.getvalue()


def make(r: random.Random) -> dict:
    t = r.randrange(len(TEMPLATES))
    statement, solution, kind, (lo, hi) = TEMPLATES[t]
    k = r.randint(lo, hi)
    statement, solution = statement.format(k=k), solution.format(k=k)
    inputs = list(dict.fromkeys(_input(kind, r) for _ in range(8)))
    tests = [{"input": x + "\n", "output": run_reference(solution, x + "\n")} for x in inputs]
    response = ("<think>\nRead the input, compute the result, print it.\n</think>\n\n"
                f"```python\n{solution}\n```")
    return {"key": f"{t}:{k}", "prompt": PROMPT.format(statement=statement),
            "reward_spec": {"tests": tests, "time_limit_s": 5.0, "memory_mb": 1024},
            "response": response}
