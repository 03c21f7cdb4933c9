"""The study's format rule: a response whose `<think>` block is left open scores 0.

Only the text after the last `</think>` is the answer the verifiers look at, so a boxed
answer or a satisfied instruction inside the reasoning earns nothing. A `</think>` with no
`<think>` in the response is fine: the chat template may have opened the block in the
prompt. `require_think=True` is the study's strict form (no `</think>` at all scores 0).
"""
from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_think(response: str, require_think: bool = False) -> tuple[bool, str]:
    """Return (format_ok, answer_text)."""
    head, sep, answer = response.rpartition(THINK_CLOSE)
    if not sep:
        return (THINK_OPEN not in response and not require_think), response
    return THINK_OPEN not in answer, answer
