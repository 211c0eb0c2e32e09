"""The real-fake builder with the real SmolLM2 generator on a few WikiText prompts.
The GGUF is converted once per test session (about 40 s); each small build then takes seconds."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from stilts_lab.data.readers import read_text_paragraphs
from stilts_lab.errors import ConfigError, DataError
from stilts_lab.synth import fakes
from stilts_lab.synth import generator as generator_module
from stilts_lab.synth.realfake import EXAMPLES_FILE, PROVENANCE_FILE, build_from_config, build_realfake
from stilts_lab.synth.sampling import NucleusSampling, ending_tokens
from stilts_lab.synth.sentences import candidate_sentences, clean_text, split_sentence

REPO = Path(__file__).resolve().parents[1]
from tests.conftest import DATA_DIR, compose_config  # noqa: E402  (one data root for the whole suite)
WIKI = DATA_DIR / "wikitext2/wiki.test.raw"
SQUAD = DATA_DIR / "squad/train-v1.1.first44articles.json"
GEN_CFG = OmegaConf.to_container(OmegaConf.load(REPO / "conf/generator/smollm2_135m.yaml"))
# The data_dir fixture fails (never skips) when the data root is missing.
needs_data = pytest.mark.usefixtures("data_dir")


# cache_dir: conftest's session cache, shared with test_controlled and the pipeline tests, so that
# the GGUF is converted once per test session (~40 s).


@contextmanager
def one_thread():
    """Test machines are shared: with two threads per op on two busy cores, every op waits for a
    descheduled thread (measured 5-10x slower). These tests check content, not speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def build(cache_dir: Path, seed: int = 7, num_examples: int = 6) -> Path:
    with one_thread():
        return build_realfake(gen_cfg=GEN_CFG, sources=[WIKI], num_examples=num_examples, num_fakes=3,
                              seed=seed, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def built(cache_dir) -> Path:
    return build(cache_dir)


@pytest.fixture(scope="session")
def tokenizer(cache_dir, built):
    return generator_module.load_generator(GEN_CFG, cache_dir)[1]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / EXAMPLES_FILE).read_text(encoding="utf-8").splitlines()]


def test_split_sentence_follows_the_paper():
    words = [f"w{i}" for i in range(1, 36)]
    # Cut to 30 words; prompt = first 15, real ending = the other 15 minus the last word.
    assert split_sentence(" ".join(words), 30, 20) == (" ".join(words[:15]), " ".join(words[15:29]))
    assert split_sentence(" ".join(words[:21]), 30, 20) == (" ".join(words[:10]), " ".join(words[10:20]))
    assert split_sentence(" ".join(words[:19]), 30, 20) is None


@pytest.mark.parametrize("candidates", [64, None], ids=["shortlist", "full-sort"])  # None: a GPU's path
@pytest.mark.parametrize("top_p,top_k,temperature", [(0.9, 0, 1.0), (0.5, 0, 0.7), (0.9, 40, 1.0), (1.0, 40, 1.3)])
def test_nucleus_sampling_keeps_the_tokens_transformers_keeps(top_p, top_k, temperature, candidates):
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)
    generator = torch.Generator().manual_seed(0)
    # Rows from peaked to flat, so that some nuclei reach past the 64 candidates (the full-sort path).
    scores = torch.randn(32, 5000, generator=generator) * torch.linspace(0.1, 6, 32)[:, None]
    scores[:, 7] = float("-inf")  # as min_new_tokens does to EOS
    expected = TemperatureLogitsWarper(temperature)(None, scores)
    expected = TopKLogitsWarper(top_k)(None, expected) if top_k else expected
    expected = TopPLogitsWarper(top_p)(None, expected) if top_p < 1 else expected
    actual = NucleusSampling(top_p, top_k, temperature, candidates=candidates)(None, scores)
    assert torch.equal(actual.isinf(), expected.isinf())
    assert torch.equal(actual[~actual.isinf()], expected[~expected.isinf()])


@needs_data
def test_candidates_from_squad_json_and_raw_text():
    sentences = candidate_sentences([SQUAD, WIKI], 30, 20)
    files = {s.source.split("#")[0] for s in sentences}
    assert files == {SQUAD.name, WIKI.name}
    assert all(10 <= len(s.prompt.split()) <= 15 and 9 <= len(s.ending.split()) <= 14 for s in sentences)
    assert len({(s.prompt, s.ending) for s in sentences}) == len(sentences)


def test_too_few_sentences_is_a_data_error(tmp_path, monkeypatch):
    source = tmp_path / "tiny.txt"
    source.write_text("Short line. " + " ".join(["word"] * 25) + ". Another short one\n", encoding="utf-8")
    monkeypatch.setattr(generator_module, "load_generator", lambda *a, **k: pytest.fail("loaded the generator"))
    with pytest.raises(DataError, match=r"needs 5 sentences.*found 1 in .*tiny\.txt"):
        build_realfake(gen_cfg=GEN_CFG, sources=[source], num_examples=5, num_fakes=3, seed=0, cache_dir=tmp_path)
    assert not (tmp_path / "realfake").exists() or not any(p.is_dir() for p in (tmp_path / "realfake").iterdir())


@pytest.mark.slow
@needs_data
def test_examples_are_well_formed(built, tokenizer):
    rows = read_rows(built)
    provenance = json.loads((built / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert len(rows) == provenance["counts"]["examples"] == 6
    # The original code always put the real ending first; here its position must vary.
    assert len({row["label"] for row in rows}) > 1
    paragraphs = read_text_paragraphs(WIKI)
    for row in rows:
        assert len(row["endings"]) == 4
        real = row["endings"][row["label"]]
        name, index = row["source"].split("#")
        assert name == WIKI.name and f"{row['prompt']} {real}" in clean_text(paragraphs[int(index)])
        budget = ending_tokens(tokenizer, real)
        for fake in row["endings"][:row["label"]] + row["endings"][row["label"] + 1:]:
            assert fake and fake != real
            assert fake == clean_text(fake) and "<|" not in fake and "\ufffd" not in fake, fake
            assert 0 < ending_tokens(tokenizer, fake) <= budget, (fake, budget)


@pytest.mark.slow
@needs_data
def test_same_seed_gives_identical_bytes(built, cache_dir):
    before = (built / EXAMPLES_FILE).read_bytes()
    shutil.rmtree(built)
    torch.manual_seed(12345)  # unrelated random state must not leak into the build
    random.seed(12345)
    assert build(cache_dir) == built
    assert (built / EXAMPLES_FILE).read_bytes() == before


@pytest.mark.slow
@needs_data
def test_other_seed_gives_other_examples(built, cache_dir):
    other = build(cache_dir, seed=8)
    assert other != built
    assert read_rows(other) != read_rows(built)


@pytest.mark.slow
@needs_data
def test_cache_hit_does_not_load_the_generator(built, cache_dir, monkeypatch):
    monkeypatch.setattr(generator_module, "load_generator", lambda *a, **k: pytest.fail("loaded the generator"))
    assert build(cache_dir) == built


@pytest.mark.slow
@needs_data
def test_a_sentence_the_generator_keeps_reciting_is_replaced(tokenizer, tmp_path, monkeypatch):
    endings = {s.prompt: s.ending for s in candidate_sentences([WIKI], 30, 20)}
    stubborn = []

    def sample_endings(model, tokenizer, prompts, budgets, *, num_fakes, **_):
        stubborn[:] = stubborn or prompts[:1]  # the first prompt always gets its real ending back
        return [[endings[p] if p in stubborn else f"fake number {j}" for j in range(num_fakes)] for p in prompts]

    monkeypatch.setattr(generator_module, "load_generator", lambda *a, **k: (None, tokenizer))
    monkeypatch.setattr(fakes, "sample_endings", sample_endings)  # the retry loop's sampler
    path = build_realfake(gen_cfg=GEN_CFG, sources=[WIKI], num_examples=4, num_fakes=3, seed=0, cache_dir=tmp_path)
    counts = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))["counts"]
    assert counts["replaced_sentences"] == 1 and counts["rejected_fakes"] == 3 * fakes.MAX_ATTEMPTS
    rows = read_rows(path)
    assert len(rows) == 4 and stubborn[0] not in {row["prompt"] for row in rows}
    assert all(sum(e == row["endings"][row["label"]] for e in row["endings"]) == 1 for row in rows)


@pytest.mark.slow
@needs_data
def test_a_failed_build_leaves_nothing_that_looks_built(tokenizer, tmp_path, monkeypatch):
    from stilts_lab.synth import realfake

    def sample_endings(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-generation

    monkeypatch.setattr(generator_module, "load_generator", lambda *a, **k: (None, tokenizer))
    monkeypatch.setattr(fakes, "sample_endings", sample_endings)  # the retry loop's sampler
    with pytest.raises(KeyboardInterrupt):
        build_realfake(gen_cfg=GEN_CFG, sources=[WIKI], num_examples=4, num_fakes=3, seed=0, cache_dir=tmp_path)
    assert [p.name for p in (tmp_path / "realfake").iterdir() if not p.name.endswith(".lock")] == []


def compose_realfake(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose("config", overrides=["intermediate=realfake", *overrides])


def test_build_from_config_names_the_missing_setting():
    with pytest.raises(DataError, match="STILTS_DATA_DIR"):
        build_from_config(compose_realfake(["paths.data_dir=null"]))
    with pytest.raises(ConfigError, match="intermediate.train_size"):
        build_from_config(compose_realfake([f"paths.data_dir={DATA_DIR}", "intermediate.train_size=null"]))


def test_cli_reports_user_errors_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stilts_lab.synth", "paths.data_dir=null"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: paths.data_dir is not set") and "Traceback" not in result.stderr


@pytest.mark.slow
@needs_data
def test_a_build_killed_while_writing_leaves_nothing_that_looks_built(tokenizer, tmp_path, monkeypatch):
    """Ctrl-C after the examples and provenance are written to the temp folder, at the rename that would
    publish them: the temp folder must go, and no folder may look built."""
    from stilts_lab.synth import realfake

    def sample_endings(model, tokenizer, prompts, budgets, *, num_fakes, **_):
        return [[f"fake number {j} of {i}" for j in range(num_fakes)] for i, _ in enumerate(prompts)]

    interrupted = {}

    def replace(src, dst):
        interrupted["tmp"] = Path(src)
        interrupted["written"] = sorted(p.name for p in Path(src).iterdir())
        raise KeyboardInterrupt

    monkeypatch.setattr(generator_module, "load_generator", lambda *a, **k: (None, tokenizer))
    monkeypatch.setattr(fakes, "sample_endings", sample_endings)  # the retry loop's sampler
    monkeypatch.setattr(realfake.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        build_realfake(gen_cfg=GEN_CFG, sources=[WIKI], num_examples=4, num_fakes=3, seed=0, cache_dir=tmp_path)
    assert interrupted["written"] == sorted([realfake.EXAMPLES_FILE, realfake.PROVENANCE_FILE])
    assert not interrupted["tmp"].exists()
    assert [p.name for p in (tmp_path / "realfake").iterdir() if not p.name.endswith(".lock")] == []


@needs_data
def test_swapped_distractors_are_real_endings_of_sentences_outside_the_set(tmp_path, monkeypatch):
    """No generator: every distractor is the real ending of a sentence that is not in the set, with the
    real ending's word count, used once; so no ending is ever seen both as real and as fake."""
    monkeypatch.setattr(generator_module, "load_generator", lambda *a, **k: pytest.fail("loaded the generator"))
    path = build_realfake(gen_cfg=GEN_CFG, sources=[WIKI], num_examples=60, num_fakes=3, seed=3, cache_dir=tmp_path,
                          fakes="swapped")
    rows = read_rows(path)
    provenance = json.loads((path / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert provenance["fakes"] == "swapped" and "generator" not in provenance and len(rows) == 60
    sentences = {s.ending: s for s in candidate_sentences([WIKI], 30, 20)}
    reals = {row["endings"][row["label"]] for row in rows}
    distractors = [e for row in rows for i, e in enumerate(row["endings"]) if i != row["label"]]
    assert len(distractors) == len(set(distractors)) == 3 * 60 and not reals & set(distractors)
    assert set(distractors) <= set(sentences)  # each one a real ending, word for word
    assert {row["prompt"] for row in rows}.isdisjoint(sentences[d].prompt for d in distractors)
    for row in rows:
        assert len({len(e.split()) for e in row["endings"]}) == 1, row
    assert len({row["label"] for row in rows}) == 4


def test_realfake_p_is_the_realfake_set_without_the_prompt(monkeypatch, tmp_path):
    """realfake_p builds (and so shares) exactly realfake's set; only its reading drops the prompt."""
    from stilts_lab.data.tasks import load_task
    from stilts_lab.synth import realfake

    seen = []
    monkeypatch.setattr(realfake, "build_realfake", lambda **kw: seen.append(kw) or tmp_path)
    for role in ("intermediate", "target"):
        for name in ("realfake", "realfake_p"):
            cfg = compose_config([f"{role}={name}", "target.train_size=10", "intermediate.train_size=10",
                                  "target.eval_size=200", "data.split_seed=42"], data_dir=DATA_DIR)
            assert build_from_config(cfg, role) == tmp_path
    assert seen[0] == seen[1] == seen[2] == seen[3] and seen[0]["adversarial_filter"] == {"pool": 10, "rounds": 3}
    rows = tmp_path / "set.jsonl"
    rows.write_text(json.dumps({"prompt": "The river", "endings": ["ran dry", "sang"], "label": 0}) + "\n"
                    + json.dumps({"prompt": "A bird", "endings": ["flew", "sank"], "label": 0}) + "\n", encoding="utf-8")
    task = OmegaConf.to_container(compose_config(["intermediate=realfake_p"]).intermediate, resolve=True)
    data = load_task(task | {"eval_size": 1}, data_dir=None, split_seed=0, realfake_file=rows)
    assert all(c[1] is None and c[0] in ("ran dry", "sang", "flew", "sank")
               for ex in data.train.examples + data.eval.examples for c in ex["choices"])


def test_max_call_tokens_bounds_each_call_and_keeps_uncapped_calls_as_they_were():
    """plan_calls: without a cap, the fixed runs of batch_size every build used (so the samples and keys
    of existing builds stand); with one, no call of 2+ prompts passes rows x (longest prompt + largest
    budget), every prompt is sampled once, in order, and a lone prompt over the cap still gets its call."""
    from stilts_lab.synth.sampling import plan_calls
    from stilts_lab.identity import realfake_build_key
    from stilts_lab.synth.spec import build_spec

    rng = random.Random(0)
    lengths = [rng.randint(10, 40) for _ in range(100)]
    budgets = sorted(rng.randint(5, 160) for _ in range(100))  # sample_endings sorts by budget
    order = list(range(100))
    assert plan_calls(order, lengths, budgets, batch_size=32, num_fakes=10) == [order[0:32], order[32:64],
                                                                              order[64:96], order[96:]]
    capped = plan_calls(order, lengths, budgets, batch_size=32, num_fakes=10, max_call_tokens=20_000)
    assert [i for call in capped for i in call] == order and max(map(len, capped)) <= 32
    for call in capped:
        tokens = len(call) * 10 * (max(lengths[i] for i in call) + max(budgets[i] for i in call))
        assert tokens <= 20_000 or len(call) == 1
    assert len(capped) > 4  # the cap binds on the long-budget calls
    assert plan_calls([0], [50], [200], batch_size=32, num_fakes=10, max_call_tokens=100) == [[0]]

    spec = lambda cfg: realfake_build_key(build_spec(gen_cfg=cfg, sources=[WIKI], num_examples=8, num_fakes=3, seed=0))
    uncapped = {k: v for k, v in GEN_CFG.items() if k != "max_call_tokens"}  # the config before the cap
    assert GEN_CFG["max_call_tokens"] == 10_000  # the shipped default caps, so its builds have new keys...
    assert spec(GEN_CFG) != spec(uncapped) != spec({**GEN_CFG, "max_call_tokens": 200_000})
    assert spec({**GEN_CFG, "max_call_tokens": None}) == spec(uncapped)  # ...and null rebuilds the old ones
    with pytest.raises(ConfigError, match=r"^generator.max_call_tokens=0 is impossible"):
        from stilts_lab.checks import check_config
        check_config(compose_config(["intermediate=realfake", "generator.max_call_tokens=0"]))
