"""Per-token log-probs (and entropy) of a causal LM's response tokens, without a
`[B, T, V]` logits tensor.

The model runs with `logits_to_keep` set to no position, so its head computes nothing;
a forward hook on the decoder takes the final hidden states `[B, T, H]`. Only response
positions (mask > 0) go through the output head, `chunk_tokens` rows at a time, each
chunk under activation checkpointing: the forward keeps one chunk's logits at a time and
the backward recomputes them chunk by chunk. Peak memory for the head is then one chunk
of fp32 logits (`chunk_tokens x V x 4` bytes, a few times over for the softmax and its
gradient), whatever the response length; the rest grows with `tokens x hidden`.

The head is called as a module, so DeepSpeed ZeRO-3 gathers its (partitioned) weight as
it does for every other layer, tied embeddings included.
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

CHUNK_TOKENS = 2048  # response tokens per head chunk: 2048 x 151,936 x 4 B = 1.2 GB of fp32 logits


def _head_logp(head, h: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool):
    logits = head(h).float()
    if temperature != 1.0:
        logits = logits / temperature
    logz = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz
    if not with_entropy:
        return logp, None
    with torch.no_grad():
        ent = logz - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return logp, ent


def final_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The decoder's last hidden states [B, T, H] from a forward of `model` (an HF causal
    LM, or a DeepSpeed engine around one) that computes no logits."""
    module = getattr(model, "module", model)
    box: list[torch.Tensor] = []

    def grab(_mod, _inp, out):
        box.append(out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0])

    handle = module.get_decoder().register_forward_hook(grab)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask,
              logits_to_keep=torch.zeros(0, dtype=torch.long, device=input_ids.device))
    finally:
        handle.remove()
    if len(box) != 1:
        raise RuntimeError(f"expected one decoder output, the hook saw {len(box)}")
    return box[0]


def response_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor,
                      temperature: float = 1.0, with_entropy: bool = False,
                      chunk_tokens: int = CHUNK_TOKENS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(token t+1 | tokens <= t) at the positions where `mask` [B, T-1] is set, as a
    [B, T-1] tensor (0 elsewhere), and the entropy there (no gradient) when asked."""
    hidden = final_hidden(model, input_ids, attention_mask)[:, :-1]
    head = getattr(model, "module", model).get_output_embeddings()
    rows, cols = (mask > 0).nonzero(as_tuple=True)
    h = hidden[rows, cols]
    targets = input_ids[:, 1:][rows, cols]
    grad = torch.is_grad_enabled() and h.requires_grad
    parts, ents = [], []
    # at least one (possibly empty) chunk: a pad row with no response token still puts the
    # whole model in the graph, so every rank's backward runs the same gradient collectives
    for s in range(0, max(1, h.shape[0]), max(1, int(chunk_tokens))):
        args = (head, h[s:s + chunk_tokens], targets[s:s + chunk_tokens], float(temperature), with_entropy)
        # one chunk in all: its logits are the peak either way, so recomputing them buys nothing
        ckpt = grad and h.shape[0] > chunk_tokens
        lp, ent = checkpoint(_head_logp, *args, use_reentrant=False) if ckpt else _head_logp(*args)
        parts.append(lp)
        ents.append(ent)
    B, T1 = mask.shape
    out = torch.zeros(B, T1, dtype=torch.float32, device=hidden.device)
    if parts:
        out = out.index_put((rows, cols), torch.cat(parts))
    ent_out = None
    if with_entropy:
        ent_out = torch.zeros(B, T1, dtype=torch.float32, device=hidden.device)
        if ents:
            ent_out[rows, cols] = torch.cat(ents)
    return out, ent_out
