"""Benchmark: peak memory of one GRPO learner forward+backward, full-logits path vs chunked.

    .venv/bin/python tools/bench_learner_memory.py [--lengths 2048,8192,32768] [--micro 1,2,4,8]
                                                   [--max-old-gb 12]

The model is a Qwen3 with a tiny body (hidden 64, 2 layers) and the real 151,936-token
vocabulary, so the output head dominates, as it does at the study's scale per token. Each
row is a 128-token prompt plus a response of the given length; every row of a micro-batch
has the same length (no padding). Both paths compute the GRPO loss (clip + TIS) and its
gradient:
  old  model(...).logits -> [B, T, V] fp32 log-softmax and full-distribution entropy
       (the learner before issue 11)
  new  m2rl.rl.logprobs.response_logprobs: response positions only, head in chunks of
       --chunk tokens under activation checkpointing (the learner now)
Each case runs in a fresh process; its peak is the process's resident-set high-water
mark during the step (VmHWM, reset just before it through /proc/self/clear_refs) minus
its resident set before the step. An old-path case whose logits alone would exceed
--max-old-gb is not run: its peak is extrapolated from the measured old-path bytes per
token (memory of that path is linear in tokens), and marked as such.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

VOCAB, HIDDEN, PROMPT = 151_936, 64, 128


def _rss_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(path: str, T: int, B: int, chunk: int) -> dict:
    import time

    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from m2rl.rl import loss as L
    from m2rl.rl.logprobs import response_logprobs

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=PROMPT + T,
                      tie_word_embeddings=True, use_cache=False)
    model = Qwen3ForCausalLM(cfg).float()
    n = PROMPT + T
    ids = torch.randint(0, VOCAB, (B, n))
    attn = torch.ones(B, n, dtype=torch.long)
    mask = torch.zeros(B, n - 1)
    mask[:, PROMPT - 1:] = 1
    engine_logp = -torch.rand(B, n - 1)
    adv = torch.randn(B)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    base = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    if path == "old":
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        logp = L.token_logprobs(logits, ids[:, 1:])
        ent = L.entropy(logits.detach())
    else:
        logp, ent = response_logprobs(model, ids, attn, mask, 1.0, with_entropy=True, chunk_tokens=chunk)
    out = L.clipped_policy_loss(logp, logp.detach(), adv, mask, clip_low=0.2, clip_high=0.28,
                                normalizer=float(mask.sum()), engine_logp=engine_logp, tis_cap=2.0)
    out.loss.backward()
    entropy = float((ent * mask).sum() / mask.sum())
    peak = _rss_kb("VmHWM")
    return {"peak_mb": (peak - base) / 1024, "seconds": time.perf_counter() - t0, "loss": float(out.loss),
            "entropy": entropy}


def run_case(path: str, T: int, B: int, chunk: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps([path, T, B, chunk])],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"rc={proc.returncode}"])[-1][:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="2048,8192,32768", help="response tokens per row")
    ap.add_argument("--micro", default="1,2,4,8", help="rows per micro-batch")
    ap.add_argument("--chunk", type=int, default=2048, help="the new path's head chunk (grpo.logprob_chunk_tokens)")
    ap.add_argument("--max-old-gb", type=float, default=3.0,
                    help="run the old path only where its fp32 logits alone stay under this (it peaks at ~4x)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*json.loads(a.child))))
        return
    lengths = [int(x) for x in a.lengths.split(",")]
    micro = [int(x) for x in a.micro.split(",")]
    print(f"Qwen3, hidden {HIDDEN}, 2 layers, vocab {VOCAB:,}; prompt {PROMPT} + response tokens per row; "
          f"new path: head chunks of {a.chunk} tokens\n")
    rows, per_token = [], []
    for T in lengths:
        for B in micro:
            tokens = B * (PROMPT + T)
            new = run_case("new", T, B, a.chunk)
            logits_gb = tokens * VOCAB * 4 / 2**30
            old = run_case("old", T, B, a.chunk) if logits_gb <= a.max_old_gb else None
            if old and "peak_mb" in old:
                per_token.append(old["peak_mb"] / tokens)
                if "loss" in new:
                    old["loss_match"] = abs(old["loss"] - new["loss"]) <= 1e-4 * max(1.0, abs(old["loss"]))
            rows.append((T, B, tokens, new, old))
    slope = sum(per_token) / len(per_token) if per_token else None
    head = f"{'response':>8} {'rows':>4} {'tokens':>8} {'new MB':>9} {'new s':>7} {'old MB':>10} {'old/new':>8}  note"
    print(head)
    print("-" * len(head))
    for T, B, tokens, new, old in rows:
        if "error" in new:
            print(f"{T:>8} {B:>4} {tokens:>8} new path failed: {new['error']}")
            continue
        note = ""
        if old and "peak_mb" in old:
            old_mb, mark = old["peak_mb"], ""
            note = "loss equal" if old.get("loss_match") else "LOSS DIFFERS"
        elif slope is not None:
            old_mb, mark = slope * tokens, "~"
            note = "old not run: extrapolated (" + (old["error"] if old else "logits alone > --max-old-gb") + ")"
        else:
            old_mb, mark = None, ""
        ratio = f"{old_mb / max(new['peak_mb'], 1e-6):.1f}x" if old_mb else "-"
        old_txt = f"{mark}{old_mb:,.0f}" if old_mb else "-"
        print(f"{T:>8} {B:>4} {tokens:>8} {new['peak_mb']:>9,.0f} {new['seconds']:>7.1f} {old_txt:>10} "
              f"{mark}{ratio:>7}  {note}")
    news = [(tok, n["peak_mb"]) for _, _, tok, n, _ in rows if "peak_mb" in n]
    if len(news) >= 2:
        (t0, m0), (t1, m1) = min(news), max(news)
        print(f"\nnew path: {(m1 - m0) / max(1, t1 - t0) * 1024:.2f} KB per token between {t0:,} and {t1:,} tokens"
              + (f"; old path: {slope * 1024:.0f} KB per token (measured)" if slope else ""))


if __name__ == "__main__":
    main()
