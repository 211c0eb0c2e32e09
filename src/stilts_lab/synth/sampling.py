"""Sampling fake endings from the generator: nucleus sampling, batched generate() calls, per-call seeds."""
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


def sample_endings(model, tokenizer, prompts: Sequence[str], budgets: Sequence[int], *, num_fakes: int,
                   gen_cfg: Mapping, seed: int, batch_size: int, progress=None,
                   processors: Sequence = ()) -> list[list[str]]:
    """`num_fakes` cleaned continuations per prompt, each cut to at most that prompt's budget.

    Prompts are sorted by (budget, prompt length) and cut into batches of `batch_size`, so one
    generate() call holds prompts of near-equal length (little left padding) and near-equal budget.
    Each call generates its largest budget, with EOS suppressed (min_new_tokens), and each row is
    cut to its own budget: sampling is left to right, so a cut sample is a sample of that length.
    batch_size=1 is the original code's one-prompt-per-call loop. gen_cfg's optional `max_call_tokens`
    caps a call's rows x tokens (plan_calls). `processors` (e.g. a token ban) run before nucleus sampling."""
    import torch
    from transformers import LogitsProcessorList

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
