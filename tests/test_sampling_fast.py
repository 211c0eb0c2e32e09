"""The builder's decode loop (synth/decode.py, recipe version 4) against generate() (recipe version 3):
the same distribution of samples, shown by the frequencies of many draws, and a test that would see a
biased sampler; the same logits step by step (the per-sample copies of the prompt's KV cache); and the
sampler chosen by the build's recipe version, so that an old build reproduces."""
from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import chi2_contingency, chisquare

from stilts_lab import identity
from stilts_lab.synth import decode, fakes
from stilts_lab.synth import generator as generator_module
from stilts_lab.synth.sampling import FAST_SAMPLER_VERSION, NucleusSampling, sample_endings

REPO = Path(__file__).resolve().parents[1]
GEN_CFG = OmegaConf.to_container(OmegaConf.load(REPO / "conf/generator/smollm2_135m.yaml"))
PROMPTS = ["The river rises in the hills north of the town and", "In 1862 the regiment"]
# A p-value under this fails a test: with the few tests here, a false alarm is about a 1-in-10^4 event.
ALPHA = 1e-4


def reference_probs(scores, top_p, top_k, temperature):
    """The generate() path's distribution: the NucleusSampling processor (equal to transformers'
    warpers, tests/test_synth.py) then a softmax over the whole vocabulary."""
    return NucleusSampling(top_p, top_k, temperature, candidates=None)(None, scores).softmax(-1)


def goodness_of_fit(draws, probs) -> float:
    """Chi-square p-value of drawn token ids against `probs` (one row), on bins of expected count >= 5
    (the rest pooled in one bin); a draw outside the support fails outright."""
    counts = torch.bincount(draws, minlength=probs.numel()).double()
    assert counts[probs == 0].sum() == 0, "drew a token outside the nucleus"
    expected = probs.double() * len(draws)
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum()[None]])
    expected = torch.cat([expected[big], expected[~big].sum()[None]])
    if expected[-1] < 5:  # too little left to pool on its own: merge it into the last bin
        observed, expected = torch.cat([observed[:-2], observed[-2:].sum()[None]]), \
            torch.cat([expected[:-2], expected[-2:].sum()[None]])
    if len(observed) < 2:  # one token holds the whole nucleus: drawing only it is the distribution
        return 1.0
    return chisquare(observed.numpy(), expected.numpy() * observed.sum().item() / expected.sum().item()).pvalue


@pytest.mark.parametrize("top_p,top_k,temperature,candidates", [
    (0.9, 0, 1.0, 1024), (0.9, 0, 1.0, 16), (0.5, 0, 0.7, 1024), (0.9, 40, 1.0, 1024), (1.0, 40, 1.3, 1024),
    (1.0, 0, 1.0, 1024)])
def test_the_shortlist_draw_has_the_full_vocabulary_distribution(top_p, top_k, temperature, candidates):
    """nucleus_draw against the exact distribution of masking + softmax + a draw over all tokens, on rows
    from peaked to flat (candidates=16: many nuclei pass the shortlist, the full-sort fallback)."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(4, 2000, generator=generator) * torch.tensor([0.3, 1.5, 3.0, 6.0])[:, None]
    rows[:, 7] = float("-inf")  # a banned token (EOS before the budget)
    draws = 10_000
    for row in rows:
        tokens = decode.nucleus_draw(row.expand(draws, -1), top_p=top_p, top_k=top_k, temperature=temperature,
                                     candidates=candidates, generator=generator)
        assert goodness_of_fit(tokens, reference_probs(row[None], top_p, top_k, temperature)[0]) > ALPHA


def test_the_frequency_test_detects_a_biased_sampler():
    """The check above can fail: top_p 0.85 instead of 0.9, or a draw that forgets the nucleus on the
    shortlist, is rejected on the same rows and numbers of draws."""
    generator = torch.Generator().manual_seed(1)
    row = torch.randn(3000, generator=generator) * 1.5
    reference = reference_probs(row[None], 0.9, 0, 1.0)[0]
    biased = decode.nucleus_draw(row.expand(20_000, -1), top_p=0.85, generator=generator)
    assert goodness_of_fit(biased, reference) < ALPHA
    # Drawing from the whole shortlist (no top-p mask) on a peaked row: tokens outside the nucleus come up.
    row = row * 3
    probs, index = row.softmax(-1).topk(1024)
    unmasked = index[torch.multinomial(probs.expand(20_000, -1), 1, generator=generator).squeeze(-1)]
    with pytest.raises(AssertionError, match="outside the nucleus"):
        goodness_of_fit(unmasked, reference_probs(row[None], 0.9, 0, 1.0)[0])


@pytest.fixture(scope="module")
def smollm2(cache_dir):
    model, tokenizer = generator_module.load_generator({**GEN_CFG, "dtype": "float32"}, cache_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared test machines: see tests/test_synth.py one_thread
    yield model, tokenizer
    torch.set_num_threads(threads)


def first_tokens_generate(model, tokenizer, prompt, draws, seed):
    """Today's (recipe version 3) draws of a prompt's first sampled token: generate() as sample_endings
    calls it, num_return_sequences copies of the prompt."""
    from transformers import LogitsProcessorList

    encoded = tokenizer([prompt], return_tensors="pt")
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**encoded, do_sample=True, top_p=1.0, top_k=0, temperature=1.0,
                             logits_processor=LogitsProcessorList([NucleusSampling(0.9)]), min_new_tokens=1,
                             max_new_tokens=1, num_return_sequences=draws, pad_token_id=tokenizer.pad_token_id)
    return out[:, encoded.input_ids.shape[1]]


def first_tokens_fast(model, tokenizer, prompt, draws, seed, top_p=0.9):
    encoded = tokenizer([prompt], return_tensors="pt")
    with torch.inference_mode():
        return decode.sample_call(model, encoded.input_ids, encoded.attention_mask, [1], num_fakes=draws,
                                  top_p=top_p, top_k=0, temperature=1.0, banned=[tokenizer.eos_token_id],
                                  generator=torch.Generator().manual_seed(seed))[:, 0]


def two_sample_p(a, b) -> float:
    """Chi-square test that two samples of token ids come from one distribution (bins with >= 10 draws
    in both together; the rest pooled)."""
    ca, cb = collections.Counter(a.tolist()), collections.Counter(b.tolist())
    tokens = sorted(set(ca) | set(cb), key=lambda t: -(ca[t] + cb[t]))
    common = [t for t in tokens if ca[t] + cb[t] >= 10]
    table = [[ca[t] for t in common], [cb[t] for t in common]]
    rest = [len(a) - sum(table[0]), len(b) - sum(table[1])]
    if sum(rest) >= 10:
        table[0].append(rest[0]), table[1].append(rest[1])
    return chi2_contingency(table).pvalue


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")
def test_first_token_frequencies_match_todays_generate(smollm2):
    """On the real SmolLM2: the decode loop's first tokens follow the exact nucleus distribution of the
    prompt and match generate()'s draws (two-sample test); with top_p 0.8 the same test rejects."""
    model, tokenizer = smollm2
    prompt = PROMPTS[0]
    encoded = tokenizer([prompt], return_tensors="pt")
    with torch.inference_mode():
        scores = model(**encoded).logits[:, -1, :].float()
    scores = scores.clone()  # a normal tensor, to be edited outside inference mode
    scores[:, tokenizer.eos_token_id] = float("-inf")  # min_new_tokens
    exact = reference_probs(scores, 0.9, 0, 1.0)[0]
    assert (exact > 0).sum() > 20  # a spread-out nucleus: a test with power

    fast = first_tokens_fast(model, tokenizer, prompt, 1500, seed=0)
    assert goodness_of_fit(fast, exact) > ALPHA
    today = first_tokens_generate(model, tokenizer, prompt, 300, seed=0)
    assert goodness_of_fit(today, exact) > ALPHA
    assert two_sample_p(fast, today) > ALPHA
    biased = first_tokens_fast(model, tokenizer, prompt, 1500, seed=1, top_p=0.8)
    assert goodness_of_fit(biased, exact) < ALPHA


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")
@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
def test_every_step_sees_the_logits_of_the_whole_sequence(smollm2, cache_kind):
    """The prompt's KV cache copied per sample, left padding, positions and rows leaving at their budget:
    at every step, each row's logits equal a fresh forward pass over its prompt and tokens so far."""
    model, tokenizer = smollm2
    seen = []

    def record(input_ids, scores):
        seen.append((input_ids.clone(), scores.clone()))
        return scores

    encoded = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    assert (encoded.attention_mask == 0).any()  # the prompts differ in length: left padding is exercised
    budgets = [2, 4]
    with torch.inference_mode():
        tokens = decode.sample_call(model, encoded.input_ids, encoded.attention_mask, budgets, num_fakes=3,
                                    top_p=0.9, top_k=0, temperature=1.0, banned=[tokenizer.eos_token_id],
                                    processors=[record], generator=torch.Generator().manual_seed(0),
                                    cache_kind=cache_kind)
        assert [len(ids) for ids, _ in seen] == [6, 6, 3, 3]  # the budget-2 rows left after two steps
        assert (tokens[:3, 2:] == 0).all() and (tokens[3:] != 0).all()
        lengths = encoded.attention_mask.sum(-1)
        for step, (ids, scores) in enumerate(seen):
            for row in range(len(ids)):
                prompt = row // 3 if step < 2 else 1
                text = ids[row, -(lengths[prompt] + step):]  # the row without its padding
                expected = model(input_ids=text[None]).logits[0, -1].float()
                expected[tokenizer.eos_token_id] = float("-inf")
                assert torch.allclose(scores[row], expected, atol=1e-3), (step, row)
    # The recorded sequences are the tokens drawn: the samples of a prompt are consecutive rows.
    assert torch.equal(seen[-1][0][:, -3:], tokens[3:, :3])


@pytest.mark.slow
@pytest.mark.usefixtures("data_dir")
def test_samples_are_reproducible_and_follow_the_recipe_version(smollm2, monkeypatch):
    """A seed gives the same samples; the recipe version picks the sampler (4: the decode loop, 3: generate()),
    and with no version given, identity.RECIPE_VERSION does."""
    model, tokenizer = smollm2
    budgets = [3, 5]

    def sample(seed=0, **kwargs):
        return sample_endings(model, tokenizer, PROMPTS, budgets, num_fakes=3, gen_cfg=GEN_CFG, seed=seed,
                              batch_size=32, **kwargs)

    assert identity.RECIPE_VERSION == FAST_SAMPLER_VERSION == 4
    torch.manual_seed(123)
    state = torch.get_rng_state()
    fast = sample()
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left alone
    assert sample() == fast == sample(recipe_version=4) and sample(seed=1) != fast
    old = sample(recipe_version=3)
    assert old != fast and sample(recipe_version=3) == old
    monkeypatch.setattr(decode, "sample_call", lambda *a, **k: pytest.fail("v3 must sample with generate()"))
    monkeypatch.setattr(identity, "RECIPE_VERSION", 3)
    assert sample() == old


def test_a_build_samples_with_its_specs_recipe_version(tmp_path, monkeypatch, data_dir):
    """build_realfake hands the spec's recipe_version to the sampler, so that a build under the old
    version (identity.RECIPE_VERSION = 3) samples as it did, under its old key."""
    from stilts_lab.synth.realfake import build_realfake
    from tests.conftest import DATA_DIR

    seen = []

    def spy(model, tokenizer, prompts, budgets, *, num_fakes, recipe_version=None, **_):
        seen.append(recipe_version)
        return [[f"fake number {j} of {i}" for j in range(num_fakes)] for i, _ in enumerate(prompts)]

    class Tokenizer:  # ending_tokens only counts tokens
        def __call__(self, text, add_special_tokens=False):
            return type("Encoded", (), {"input_ids": text.split()})()

    monkeypatch.setattr(generator_module, "load_generator", lambda *a, **k: (None, Tokenizer()))
    monkeypatch.setattr(fakes, "sample_endings", spy)
    wiki = DATA_DIR / "wikitext2/wiki.test.raw"
    keys = []
    for version in (4, 3):
        monkeypatch.setattr(identity, "RECIPE_VERSION", version)
        keys.append(build_realfake(gen_cfg=GEN_CFG, sources=[wiki], num_examples=4, num_fakes=3, seed=0,
                                   cache_dir=tmp_path, fakes="paper").name)
    assert seen == [4, 3] and keys[0] != keys[1]
