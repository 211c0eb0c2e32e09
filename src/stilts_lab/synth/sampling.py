"""Sampling fake endings from the generator: nucleus sampling, batched calls, per-call seeds.

Two samplers, chosen by the build's recipe version (spec["recipe_version"]), so that a set built
before the fast one can still be rebuilt byte for byte:
  <= 3  generate(num_return_sequences=k) per call (below);
  >= 4  synth/decode.sample_call: each prompt prefilled once, its KV cache copied per sample, tokens
        drawn from the nucleus shortlist, rows stopped at their own budget. The same distribution
        (tests/test_sampling_fast.py), other draws: a new version, so new keys."""
from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

from stilts_lab.memory import release_freed_memory
from stilts_lab.synth.sentences import clean_text


def ending_tokens(tokenizer, ending: str) -> int:
    """Generator tokens in `ending` as written right after its prompt (hence the leading space)."""
    return len(tokenizer(" " + ending, add_special_tokens=False).input_ids)


def derive_seed(seed: int, *parts) -> int:
    """A seed for one generate() call that depends only on the build seed and the call's place."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class NucleusSampling:
    """transformers' temperature, top-k and top-p warpers in one logits processor, without sorting the
    whole vocabulary every step on the CPU: there that sort (49k tokens per sequence) costs about as
    much as the model's forward pass. The nucleus nearly always lies within the top `candidates`
    tokens, which topk finds ~10x faster; rows where it does not (a flat distribution) fall back to a
    full sort. Choosing those rows reads a value back, which on the CPU costs nothing but on a GPU
    waits for the device every token, so on a GPU (or with candidates=None) every row is fully sorted,
    which is cheap there, and nothing is read back."""

    def __init__(self, top_p: float, top_k: int = 0, temperature: float = 1.0, candidates: int | None = 1024):
        self.top_p, self.top_k, self.temperature, self.candidates = top_p, top_k, temperature, candidates

    def __call__(self, input_ids, scores):
        import torch

        scores = scores / self.temperature
        if self.top_p >= 1.0 and not self.top_k:
            return scores
        top_p = self.top_p if self.top_p < 1.0 else float("inf")  # top-k only: rounding must not cut
        vocab = scores.shape[-1]
        shortlist = self.candidates if scores.device.type == "cpu" and self.candidates else vocab
        k = min(self.top_k or shortlist, vocab)
        if self.top_k or k < vocab:
            logits, index = scores.topk(k, dim=-1)  # largest first
            # With a top-k cut, top-p acts on the renormalised top k (as in transformers); else on all tokens.
            probs = logits.softmax(-1) if self.top_k else (logits - scores.logsumexp(-1, keepdim=True)).exp()
        else:
            probs, index = scores.softmax(-1).sort(-1, descending=True)
        remove = torch.ones_like(scores, dtype=torch.bool)
        # A token stays while the mass ranked above it is under top_p (so the first always stays).
        remove.scatter_(-1, index, (probs.cumsum(-1) - probs) >= top_p)
        if not self.top_k and k < vocab:  # on the host only: the shortlist may miss part of the nucleus
            wide = probs.sum(-1) < top_p
            if wide.any():
                probs, index = scores[wide].softmax(-1).sort(-1, descending=True)
                remove[wide] = torch.ones_like(probs, dtype=torch.bool).scatter_(
                    -1, index, (probs.cumsum(-1) - probs) >= top_p)
        return scores.masked_fill(remove, float("-inf"))


def plan_calls(order: Sequence[int], prompt_lengths: Sequence[int], budgets: Sequence[int], *, batch_size: int,
               num_fakes: int, max_call_tokens: int | None = None) -> list[list[int]]:
    """The prompts of each generate() call, in `order`: runs of `batch_size` prompts; with `max_call_tokens`,
    a call also closes before its rows x (longest prompt + largest budget) tokens pass the cap, since
    SmolLM2's KV cache for those rows is what the generation phase's peak memory holds (docs/performance.md).
    Without a cap the calls are the fixed runs every build before it used, so its samples are unchanged."""
    if not max_call_tokens:
        return [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
    calls, call, longest, largest = [], [], 0, 0
    for i in order:
        grown = (len(call) + 1) * num_fakes * (max(longest, prompt_lengths[i]) + max(largest, budgets[i]))
        if call and (len(call) == batch_size or grown > max_call_tokens):
            calls.append(call)
            call, longest, largest = [], 0, 0
        call.append(i)
        longest, largest = max(longest, prompt_lengths[i]), max(largest, budgets[i])
    return calls + [call] if call else calls


# The first recipe version sampled by synth/decode.py's loop instead of generate().
FAST_SAMPLER_VERSION = 4


def sample_endings(model, tokenizer, prompts: Sequence[str], budgets: Sequence[int], *, num_fakes: int,
                   gen_cfg: Mapping, seed: int, batch_size: int, progress=None,
                   processors: Sequence = (), recipe_version: int | None = None,
                   stats: dict | None = None) -> list[list[str]]:
    """`num_fakes` cleaned continuations per prompt, each cut to at most that prompt's budget.

    Prompts are sorted by (budget, prompt length) and cut into batches of `batch_size`, so one
    generate() call holds prompts of near-equal length (little left padding) and near-equal budget.
    Each call generates its largest budget, with EOS suppressed (min_new_tokens), and each row is
    cut to its own budget: sampling is left to right, so a cut sample is a sample of that length.
    batch_size=1 is the original code's one-prompt-per-call loop. gen_cfg's optional `max_call_tokens`
    caps a call's rows x tokens (plan_calls). `processors` (e.g. a token ban) run before nucleus sampling.
    recipe_version: the build's (default identity.RECIPE_VERSION); it picks the sampler (module doc).
    stats (fast sampler only): prefill/decode seconds and token counts are added to it."""
    import torch
    from transformers import LogitsProcessorList

    from stilts_lab import identity

    if recipe_version is None:
        recipe_version = identity.RECIPE_VERSION
    if int(recipe_version) >= FAST_SAMPLER_VERSION:
        return _sample_endings_fast(model, tokenizer, prompts, budgets, num_fakes=num_fakes, gen_cfg=gen_cfg,
                                    seed=seed, batch_size=batch_size, progress=progress, processors=processors,
                                    stats=stats)

    prompt_lengths = [len(ids) for ids in tokenizer(list(prompts)).input_ids]
    order = sorted(range(len(prompts)), key=lambda i: (budgets[i], prompt_lengths[i]))
    results: list[list[str]] = [[] for _ in prompts]
    # Sampling is all in NucleusSampling: generate() gets neutral values so it adds no warpers of its own.
    nucleus = NucleusSampling(top_p=float(gen_cfg["top_p"]), top_k=int(gen_cfg.get("top_k") or 0),
                              temperature=float(gen_cfg["temperature"]))
    devices = [model.device] if model.device.type == "cuda" else []
    # fork_rng: seeding here must not disturb the caller's random state.
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        calls = plan_calls(order, prompt_lengths, budgets, batch_size=batch_size, num_fakes=num_fakes,
                           max_call_tokens=gen_cfg.get("max_call_tokens"))
        for call, batch in enumerate(calls):
            encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(model.device)
            budget = max(budgets[i] for i in batch)
            torch.manual_seed(derive_seed(seed, call))
            sequences = model.generate(
                **encoded, do_sample=True, top_p=1.0, top_k=0, temperature=1.0,
                logits_processor=LogitsProcessorList([*processors, nucleus]), min_new_tokens=budget,
                max_new_tokens=budget, num_return_sequences=num_fakes, pad_token_id=tokenizer.pad_token_id)
            new_tokens = sequences[:, encoded.input_ids.shape[1]:]
            for row, i in enumerate(batch):  # generate() returns a prompt's samples consecutively
                samples = new_tokens[row * num_fakes:(row + 1) * num_fakes, :budgets[i]]
                results[i] = [clean_text(t) for t in tokenizer.batch_decode(samples, skip_special_tokens=True)]
            # The call's KV cache grew by a concatenation per token and layer; its freed heap stays resident
            # under glibc and adds up over calls. Handing it back costs milliseconds against a call's seconds.
            del sequences, new_tokens, encoded
            release_freed_memory()
            if progress is not None:
                progress.update(len(batch))
    return results


def _sample_endings_fast(model, tokenizer, prompts, budgets, *, num_fakes, gen_cfg, seed, batch_size, progress,
                         processors, stats):
    """sample_endings for recipe version 4 on: the same calls (plan_calls) and cuts, each call sampled by
    decode.sample_call with its own torch.Generator seeded from (seed, call)."""
    import torch

    from stilts_lab.synth.decode import sample_call

    prompt_lengths = [len(ids) for ids in tokenizer(list(prompts)).input_ids]
    order = sorted(range(len(prompts)), key=lambda i: (budgets[i], prompt_lengths[i]))
    results: list[list[str]] = [[] for _ in prompts]
    eos = model.generation_config.eos_token_id
    banned = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    settings = dict(top_p=float(gen_cfg["top_p"]), top_k=int(gen_cfg.get("top_k") or 0),
                    temperature=float(gen_cfg["temperature"]))
    calls = plan_calls(order, prompt_lengths, budgets, batch_size=batch_size, num_fakes=num_fakes,
                       max_call_tokens=gen_cfg.get("max_call_tokens"))
    with torch.inference_mode():
        for call, batch in enumerate(calls):
            encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True).to(model.device)
            # A generator of its own: the caller's random state is neither read nor disturbed.
            generator = torch.Generator(model.device).manual_seed(derive_seed(seed, "fast", call))
            tokens = sample_call(model, encoded.input_ids, encoded.attention_mask, [budgets[i] for i in batch],
                                 num_fakes=num_fakes, banned=banned, processors=processors, generator=generator,
                                 stats=stats, **settings)
            for row, i in enumerate(batch):  # a prompt's samples are consecutive rows
                samples = tokens[row * num_fakes:(row + 1) * num_fakes, :budgets[i]]
                results[i] = [clean_text(t) for t in tokenizer.batch_decode(samples, skip_special_tokens=True)]
            del tokens, encoded
            release_freed_memory()  # the call's KV cache still grows by concatenation (decode.py)
            if progress is not None:
                progress.update(len(batch))
    return results
