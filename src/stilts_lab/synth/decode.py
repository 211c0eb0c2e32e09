"""The builder's own decode loop (recipe version 4, issue #38): the same nucleus samples as
`generate(num_return_sequences=k)` in distribution, with three costs of that path gone.

1. Prefill once per prompt. generate() copies each prompt k times before the forward pass, so the
   prompt's KV cache (identical across the pool) was computed k times. Here the batch's prompts run
   once; the cache, the last position's logits and the attention mask are then repeated k times
   (DynamicCache.batch_repeat_interleave), and every row samples on from its own copy. Each row
   draws its own tokens from its own logits, so the k samples stay independent draws.
2. Rows stop at their own budget. A call's prompts have near-equal budgets (sorted by budget), but
   not equal: a row past its budget leaves the batch (cache, mask and all), where generate() kept
   computing it up to the call's largest budget and threw the tokens away.
3. The token is drawn from the nucleus shortlist. generate() masks the logits outside the nucleus,
   then takes a softmax and a multinomial draw over all 49,152 entries (a fifth of a profile). The
   nucleus nearly always lies within the top `candidates` tokens: a draw over those (their
   probabilities, zero outside the nucleus; multinomial renormalises) mapped back to vocabulary ids
   is the same distribution. A row whose nucleus reaches past the shortlist (a flat distribution)
   is drawn from the fully sorted vocabulary instead.

The KV cache stays transformers' DynamicCache (a torch.cat per token and layer). A hand-off to a
preallocated StaticCache after the prefill (cache_kind="static": the prompts' keys and values copied k
times into a cache holding every row's prompt and largest budget, one column written per step) was
measured against it on the builder's calls: 8% slower and no smaller (bench/builder_throughput.py,
docs/performance.md), since each row leaving at its budget copies the whole preallocated cache.
"""
from __future__ import annotations

import time
from typing import Sequence

# Tokens in the shortlist the nucleus is looked for in; the nucleus (top_p 0.9) of SmolLM2 nearly always
# fits, and topk over 49k entries finds them ~10x faster than a full sort (synth/sampling.NucleusSampling).
CANDIDATES = 1024
# The KV cache of the decode loop: "dynamic" (grown by torch.cat) or "static" (preallocated; slower
# here, see the module doc), kept for bench/builder_throughput.py's comparison. The kinds round differently,
# so the draws differ: changing the default changes what a seed builds and needs a RECIPE_VERSION bump.
CACHE_KIND = "dynamic"


def nucleus_draw(scores, *, top_p: float, top_k: int = 0, temperature: float = 1.0, candidates: int = CANDIDATES,
                 generator=None):
    """One token per row of `scores` (rows x vocab, float), drawn from the distribution that
    temperature, top-k and top-p warpers followed by softmax + multinomial give (transformers'
    semantics: top-p on the renormalised top k when top_k is set, a token stays while the mass ranked
    above it is under top_p), without a softmax or a draw over the whole vocabulary."""
    import torch

    scores = scores / temperature
    vocab = scores.shape[-1]
    if top_p >= 1.0 and not top_k:  # no truncation: the full distribution is the one to draw from
        return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(-1)
    k = min(top_k or candidates, vocab)
    if top_k:  # top-p acts on the renormalised top k (as in transformers)
        logits, index = scores.topk(k, dim=-1)  # largest first
        probs = logits.softmax(-1)
    else:  # on all tokens; one softmax pass costs a fifth of a logsumexp on the CPU
        probs, index = scores.softmax(-1).topk(k, dim=-1)
    if top_p < 1.0:
        probs = probs.masked_fill((probs.cumsum(-1) - probs) >= top_p, 0.0)
    tokens = index.gather(-1, torch.multinomial(probs, 1, generator=generator)).squeeze(-1)
    if not top_k and k < vocab:
        # The shortlist may miss part of the nucleus where its mass stays under top_p: those rows are
        # drawn again from the fully sorted vocabulary (their shortlist draw is discarded).
        wide = probs.sum(-1) < top_p
        if wide.any():
            full, order = scores[wide].softmax(-1).sort(-1, descending=True)
            full = full.masked_fill((full.cumsum(-1) - full) >= top_p, 0.0)
            tokens[wide] = order.gather(-1, torch.multinomial(full, 1, generator=generator)).squeeze(-1)
    return tokens


def sample_call(model, input_ids, attention_mask, budgets: Sequence[int], *, num_fakes: int, top_p: float,
                top_k: int, temperature: float, banned: Sequence[int] = (), processors: Sequence = (),
                generator=None, stats: dict | None = None, cache_kind: str | None = None):
    """`num_fakes` samples per prompt of one left-padded batch: a (prompts * num_fakes) x max(budgets)
    tensor of token ids, a prompt's samples consecutively; row r holds budgets[r // num_fakes] sampled
    tokens and padding (0) after them. `banned` (the EOS ids: no sample ends early, as min_new_tokens
    did) and `processors` act on the logits before nucleus sampling. `stats` adds prefill/decode seconds
    and counts of prefill and decode token-forwards."""
    import torch
    from transformers import DynamicCache

    device = input_ids.device
    cache_kind = cache_kind or CACHE_KIND
    rows = input_ids.shape[0] * num_fakes
    budget = torch.tensor(budgets, device=device).repeat_interleave(num_fakes)
    longest = max(budgets)
    # Positions from the mask, as generate() computes them: left padding must not shift the prompt.
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    started = time.perf_counter()
    cache = DynamicCache(config=model.config)
    # logits_to_keep=1: only the last position's logits are needed (not prompt x 49k of them).
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, cache=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1, :].float()
    # The prompt's cache is the same for all of its samples: copy it per sample instead of computing it again.
    width = input_ids.shape[1]
    if cache_kind == "static":
        cache = _static_copy(model, cache, num_fakes, width + longest)
        # The mask spans the whole preallocated cache: a column turns on as its token is written.
        mask = torch.cat([attention_mask, attention_mask.new_zeros(len(attention_mask), longest)], dim=-1)
        mask = mask.repeat_interleave(num_fakes, 0)
    else:
        cache.batch_repeat_interleave(num_fakes)
        mask = attention_mask.repeat_interleave(num_fakes, 0)
    logits = logits.repeat_interleave(num_fakes, 0)
    position = positions[:, -1].repeat_interleave(num_fakes, 0)
    # The sequences so far, for processors that read them (none of the builder's does); a view per step.
    sequences = torch.cat([input_ids.repeat_interleave(num_fakes, 0),
                           input_ids.new_zeros(rows, longest)], dim=-1)
    tokens = input_ids.new_zeros(rows, longest)
    active = torch.arange(rows, device=device)  # rows still sampling, in the cache's order
    prefilled = time.perf_counter()
    decode_forwards = 0
    banned = list(banned)
    for step in range(longest):
        scores = logits
        if banned:
            scores[:, banned] = float("-inf")
        for processor in processors:
            scores = processor(sequences[active, :width + step], scores)
        drawn = nucleus_draw(scores, top_p=top_p, top_k=top_k, temperature=temperature, generator=generator)
        tokens[active, step] = drawn
        sequences[active, width + step] = drawn
        if step + 1 == longest:
            break  # the last token needs no forward pass
        # A row whose budget is reached leaves the batch: nothing more is computed for it.
        going = budget[active] > step + 1
        if not bool(going.all()):
            keep = going.nonzero().squeeze(-1)
            if cache_kind == "static":
                for layer in cache.layers:  # StaticLayer has no batch_select_indices: index its tensors
                    layer.keys, layer.values = layer.keys[keep], layer.values[keep]
            else:
                cache.batch_select_indices(keep)
            active, mask, position, drawn = active[keep], mask[keep], position[keep], drawn[keep]
        if cache_kind == "static":
            mask[:, width + step] = 1  # the token drawn this step, written at that column next
        else:
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=-1)
        position = position + 1
        logits = model(input_ids=drawn[:, None], attention_mask=mask, position_ids=position[:, None], cache=cache,
                       use_cache=True).logits[:, -1, :].float()
        decode_forwards += len(active)
    if stats is not None:
        finished = time.perf_counter()
        stats["prefill_seconds"] = stats.get("prefill_seconds", 0.0) + prefilled - started
        stats["decode_seconds"] = stats.get("decode_seconds", 0.0) + finished - prefilled
        stats["prefill_tokens"] = stats.get("prefill_tokens", 0) + int(attention_mask.sum())
        stats["decode_tokens"] = stats.get("decode_tokens", 0) + decode_forwards
        stats["sampled_tokens"] = stats.get("sampled_tokens", 0) + int(budget.sum())
    return tokens


def _static_copy(model, prefilled, repeats: int, length: int):
    """A StaticCache of `length` positions holding each row of the prefilled DynamicCache `repeats`
    times (consecutively), written at positions 0..prompt width - 1; the StaticLayer's own counter then
    places every later token at the next column."""
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=length)
    for target, source in zip(cache.layers, prefilled.layers):
        target.update(source.keys.repeat_interleave(repeats, 0), source.values.repeat_interleave(repeats, 0))
    return cache
