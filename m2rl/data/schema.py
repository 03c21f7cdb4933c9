"""The sample every domain shares, from generators and loaded data alike.

In a `datasets.Dataset` the per-domain `reward_spec` is stored as JSON text (the domains'
specs have different shapes); `to_sample(row)` gives it back as a dict, and the reward
API accepts either form.
"""
from __future__ import annotations

import json
from typing import TypedDict

import datasets


class Sample(TypedDict, total=False):
    id: str
    domain: str  # "math" | "code" | "science" | "if": routes the reward
    messages: list[dict]  # the prompt as chat messages ({"role", "content"})
    # math: {"answer"}; code: {"tests": [{"input", "output"}], "time_limit_s", "memory_mb"};
    # science: {"choices": [...], "answer": "C"}; if: {"instruction_id_list", "kwargs", "prompt"}
    reward_spec: dict
    source: str  # where it came from: "generated" or the blend's `dataset` name
    response: str  # SFT only: the assistant's reply


_MESSAGES = [{"role": datasets.Value("string"), "content": datasets.Value("string")}]
RL_FEATURES = datasets.Features({
    "id": datasets.Value("string"), "domain": datasets.Value("string"), "messages": _MESSAGES,
    "reward_spec": datasets.Value("string"), "source": datasets.Value("string"),
})
SFT_FEATURES = datasets.Features({**RL_FEATURES, "response": datasets.Value("string")})


def to_row(sample: Sample) -> dict:
    row = dict(sample)
    row["reward_spec"] = json.dumps(sample.get("reward_spec", {}), sort_keys=True)
    row["messages"] = [{"role": m["role"], "content": m["content"]} for m in sample["messages"]]
    row.setdefault("source", "")
    return row


def to_sample(row: dict) -> Sample:
    sample = dict(row)
    if isinstance(sample.get("reward_spec"), str):
        sample["reward_spec"] = json.loads(sample["reward_spec"])
    return sample  # type: ignore[return-value]


def to_dataset(samples: list[Sample], sft: bool = False) -> datasets.Dataset:
    features = SFT_FEATURES if sft else RL_FEATURES
    return datasets.Dataset.from_list([to_row(s) for s in samples], features=features)
