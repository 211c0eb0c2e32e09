"""Controlled fakes: a small real build with the SmolLM2 generator meets the surface constraints
(one fragment, no sentence break, no edge punctuation, the real ending's word count +-1), counts what
it did, and audits itself; the config choices and the cache key follow fakes= and the generator."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from stilts_lab.errors import ConfigError
from stilts_lab.synth.audit import PUNCTUATION, SENTENCE_BREAK
from stilts_lab.synth.controlled import BanTokens, fit_to_words, strip_edges
from stilts_lab.synth.generator import resolve_dtype
from stilts_lab.identity import realfake_build_key
from stilts_lab.synth.realfake import EXAMPLES_FILE, PROVENANCE_FILE, build_realfake
from stilts_lab.synth.spec import build_spec
from tests.conftest import CONF, DATA_DIR

REPO = Path(__file__).resolve().parents[1]
WIKI = DATA_DIR / "wikitext2/wiki.test.raw"
GEN_CFG = OmegaConf.to_container(OmegaConf.load(REPO / "conf/generator/smollm2_135m.yaml"))
PROMPTS = 8


@pytest.fixture(scope="module")
def controlled(cache_dir, data_dir) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread per op is faster than two waiting
    try:
        return build_realfake(gen_cfg=GEN_CFG, sources=[WIKI], num_examples=PROMPTS, num_fakes=3, seed=11,
                              cache_dir=cache_dir, fakes="controlled")
    finally:
        torch.set_num_threads(threads)


def test_fakes_share_the_real_endings_surface(controlled):
    rows = [json.loads(line) for line in (controlled / EXAMPLES_FILE).read_text(encoding="utf-8").splitlines()]
    assert len(rows) == PROMPTS
    for row in rows:
        real = row["endings"][row["label"]]
        assert real == strip_edges(real)  # real endings lose edge punctuation too
        for fake in (e for i, e in enumerate(row["endings"]) if i != row["label"]):
            assert not SENTENCE_BREAK.search(fake) and not any(c in fake for c in ".!?\n"), fake
            assert fake[0] not in PUNCTUATION and fake[-1] not in PUNCTUATION, fake
            assert abs(len(fake.split()) - len(real.split())) <= 1, (fake, real)
            assert fake != real


def test_provenance_counts_and_audits_the_build(controlled):
    provenance = json.loads((controlled / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert provenance["fakes"] == "controlled"
    counts = provenance["counts"]
    for name in ("constrained_sequences", "cut_fakes", "resampled_fakes", "rejected_fakes",
                 "replaced_sentences", "real_endings_edge_stripped"):
        assert name in counts, name
    assert counts["constrained_sequences"] == counts["generated_sequences"] >= 3 * PROMPTS
    assert counts["cut_fakes"] > 0  # the larger budget overshoots; the cut brings it back
    audit = provenance["audit"]
    assert audit["examples"] == PROMPTS and audit["chance"] == pytest.approx(0.25)
    # By construction these tie on every example: exactly chance.
    for name in ("sentence_break", "leading_punctuation", "trailing_punctuation"):
        assert audit["detectors"][name]["accuracy"] == pytest.approx(0.25), name
    assert audit["detectors"]["word_count"]["accuracy"] <= 0.25 + 0.05


def test_fit_to_words_cuts_and_strips():
    assert fit_to_words('"and then the city, which grew', 4) == ("and then the city", True)
    assert fit_to_words("of the river — a", 4) == ("of the river — a", False)
    assert fit_to_words("of the river —", 4) == ("of the river", False)  # short: drawn again by the caller
    assert fit_to_words("one two — three four", 3) == ("one two — three", True)


def test_banned_tokens_get_no_probability():
    scores = torch.zeros(2, 10)
    out = BanTokens([1, 7], vocab_size=8)(None, scores)  # output layer wider than the tokenizer
    assert torch.isinf(out[:, [1, 7]]).all() and torch.isfinite(out[:, [0, 2, 8, 9]]).all()


def test_cache_key_follows_fakes_and_every_generator_setting(data_dir):
    base = dict(gen_cfg=GEN_CFG, sources=[WIKI], num_examples=10, num_fakes=3, seed=1)
    key = realfake_build_key(build_spec(**base, fakes="controlled"))
    assert key != realfake_build_key(build_spec(**base, fakes="paper"))
    assert key != realfake_build_key(build_spec(**{**base, "gen_cfg": {**GEN_CFG, "top_p": 0.95}}, fakes="controlled"))
    assert key != realfake_build_key(build_spec(**{**base, "gen_cfg": {**GEN_CFG, "revision": "x"}},
                                                fakes="controlled"))
    with pytest.raises(ConfigError, match="intermediate.fakes"):
        build_spec(**base, fakes="clean")
    # dtype enters as resolved: "auto" builds the same set as the dtype it stands for on this machine.
    f32 = realfake_build_key(build_spec(**{**base, "gen_cfg": {**GEN_CFG, "dtype": "float32"}}))
    assert f32 != realfake_build_key(build_spec(**{**base, "gen_cfg": {**GEN_CFG, "dtype": "bfloat16"}}))


def test_generator_dtype_choice():
    assert resolve_dtype(None) == resolve_dtype("float32") == "float32"
    assert resolve_dtype("auto", "cpu") in ("bfloat16", "float32")
    with pytest.raises(ConfigError, match="generator.dtype"):
        resolve_dtype("fp8")


def test_configs_name_the_arms():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        default = compose("config", ["intermediate=realfake"])
        paper = compose("config", ["intermediate=realfake_paper"])
        ablation = compose("config", ["+experiment=ablation_fakes"], return_hydra_config=True)
    assert default.intermediate.fakes == "controlled" and default.intermediate.name == "realfake"
    assert paper.intermediate.fakes == "paper" and paper.intermediate.name == "realfake_paper"
    assert paper.intermediate.sources == default.intermediate.sources
    params = ablation.hydra.sweeper.params
    assert params["intermediate"].split(",") == ["none", "realfake_paper", "realfake_controlled"]
    assert list(params)[-1] == "intermediate"  # slowest-varying last: a partial sweep keeps the arms balanced


def test_balancing_drops_rows_where_the_real_ending_stands_out():
    """Hand-made: in a sixth of the rows the real ending is the longest in characters; keeping 75 of
    100 rows must bring "pick the longest" back to chance, and keep the rows' order."""
    import random

    from stilts_lab.synth.audit import audit_rows
    from stilts_lab.synth.controlled import balance_ranks

    rng = random.Random(0)
    rows = []
    for index in range(100):
        endings = [" ".join(rng.choice(["river", "stone", "a", "harbour"]) for _ in range(8)) for _ in range(4)]
        label = rng.randrange(4)
        if index % 6 == 0:
            endings[label] += " extraordinarily"
        rows.append({"prompt": "", "endings": endings, "label": label, "id": index})
    before = audit_rows(rows)["detectors"]["char_count"]["accuracy"]
    kept = balance_ranks(rows, 75, seed=1)
    after = audit_rows(kept)["detectors"]["char_count"]["accuracy"]
    assert before > 0.33 and after <= 0.25 + 0.01, (before, after)
    assert len(kept) == 75 and [r["id"] for r in kept] == sorted(r["id"] for r in kept)


def test_token_processors_read_nothing_back_per_generated_token(monkeypatch):
    """Issue 15: the token ban copied its mask to the device and nucleus sampling branched on a device
    value (`wide.any()`) once per generated token, each a wait for a GPU. On "meta" tensors (what a
    device run sees, with no values to read) 16 decoding steps must make one mask copy in all and no
    read-back; the old code made 16 copies and raised on its first read-back."""
    from stilts_lab.synth.sampling import NucleusSampling

    copies, reads = [], []
    real_to, real_bool = torch.Tensor.to, torch.Tensor.__bool__

    def to(self, *args, **kwargs):
        copies.append(args)
        return real_to(self, *args, **kwargs)

    def read_back(self):
        reads.append(self.shape)
        return real_bool(self)

    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(torch.Tensor, "__bool__", read_back)
    ban, nucleus = BanTokens([1, 7], vocab_size=5000), NucleusSampling(top_p=0.9)
    for _ in range(16):
        scores = torch.empty(6, 5004, device="meta")  # output layer padded past the tokenizer
        out = nucleus(None, ban(None, scores))
        assert out.shape == scores.shape and out.device.type == "meta"
    assert len(copies) == 1 and reads == [], (len(copies), len(reads))


def test_filter_settings_enter_the_key_and_bad_ones_name_the_key(data_dir):
    base = dict(gen_cfg=GEN_CFG, sources=[WIKI], num_examples=10, num_fakes=3, seed=1, fakes="controlled")
    plain = realfake_build_key(build_spec(**base))
    filtered = realfake_build_key(build_spec(**base, adversarial_filter={"pool": 10, "rounds": 3}))
    assert len({plain, filtered, realfake_build_key(build_spec(**base, adversarial_filter={"pool": 12, "rounds": 3})),
                realfake_build_key(build_spec(**base, adversarial_filter={"pool": 10, "rounds": 2}))}) == 4
    assert realfake_build_key(build_spec(**base, adversarial_filter=None)) == plain
    for bad, match in [({"pool": 3, "rounds": 1}, r"adversarial_filter.pool is 3: expected an integer above"),
                       ({"pool": 8, "rounds": 0}, r"adversarial_filter.rounds is 0"),
                       ({"pool": 8, "rounds": 1, "size": 2}, r"unknown key\(s\) \['size'\]")]:
        with pytest.raises(ConfigError, match=match):
            build_spec(**base, adversarial_filter=bad)
    with pytest.raises(ConfigError, match="fakes=swapped has none"):
        build_spec(**{**base, "fakes": "swapped"}, adversarial_filter={"pool": 8, "rounds": 1})
    # No generator in a swapped set: neither the generator's settings nor the device change its key.
    swapped = dict(base, fakes="swapped")
    assert realfake_build_key(build_spec(**swapped)) == realfake_build_key(
        build_spec(**{**swapped, "gen_cfg": {**GEN_CFG, "top_p": 0.5}}, device="cuda"))


def test_adversarial_filter_removes_a_planted_lexical_give_away():
    """Hand-made pools: real endings and fakes share one vocabulary, but 5 of each prompt's 8 candidates
    carry a word real endings never use ("indeed"), and the unfiltered draw (each pool's first 3) holds
    them. The endings-only detectors find the real ending far above chance before filtering; after,
    the kept fakes avoid the give-away and every detector is back near chance."""
    import random

    from stilts_lab.synth.filtering import adversarial_filter

    rng = random.Random(0)
    vocab = "river stone harbour castle market bridge valley forest tower garden".split()

    def ending() -> str:
        return " ".join(rng.choice(vocab) for _ in range(8))

    prompts = [f"prompt {i}" for i in range(150)]
    reals = [ending() for _ in prompts]
    pools = [[ending().replace(" ", " indeed ", 1) if j < 5 else ending() for j in range(8)] for _ in prompts]
    labels = [rng.randrange(4) for _ in prompts]
    fakes, report = adversarial_filter(prompts, reals, pools, labels, num_fakes=3, rounds=2, seed=0)
    before, after = report["history"][0]["accuracy"], report["history"][report["kept_round"]]["accuracy"]
    assert before["word_ngrams"] > 0.6 and before["char_ngrams"] > 0.5, before
    assert max(after.values()) <= 0.25 + 0.08, after
    assert sum("indeed" in f for row in fakes for f in row) <= 0.05 * 3 * len(prompts)
    assert [len(row) for row in fakes] == [3] * len(prompts)
    assert all(set(row) <= set(pool) for row, pool in zip(fakes, pools))
    dropped = report["dropped"]
    assert dropped["kept"] == 3 * len(prompts) and dropped["dropped"] == 5 * len(prompts)
    assert dropped["words_dropped_more"][0]["word"] == "indeed"
    assert report["history"][1]["replaced_fakes"] > 0
