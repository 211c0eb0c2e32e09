"""The embedded MiniLM learns: through the real pipeline, on a task it can learn in a few dozen steps,
it must beat the trivial baseline by a clear margin.

The task is built here so its answer is known: is the statement negated? Each sentence is "the
<noun> <verb> <adjective>" or the same with "not", over word lists large enough that the dev set
holds word combinations the training set never showed. A frozen MiniLM's pooled output barely
separates a sentence from its negation (sentence encoders are known to be weak at negation), so a
head alone does not get there in this budget; fine-tuning the encoder does (1.0 dev accuracy after
3 epochs of 10 steps).

Each of these was checked by breaking it once: shuffled labels, an optimizer whose update is zero,
a learning rate 1000x too small, a frozen encoder and a head dropped at evaluation (the dev score
taken with a fresh head) each leave the dev accuracy near 0.5. A head left out of training does
not: the encoder adapts to its random projection and still reaches 1.0, so the test also checks
that every weight moved.

It runs under trainer=cpu as configured, so on a CPU with native bf16 it checks that bf16 autocast learns.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import stilts_lab.stage as stage
from stilts_lab.devices import cpu_precision, native_bf16
from stilts_lab.pipeline import run
from stilts_lab.results import METRICS_FILE
from tests.conftest import compose_config, spy_stages

NOUNS = ["movie", "soup", "train", "garden", "teacher", "bridge", "song", "river", "phone", "chair",
         "story", "engine", "city", "coffee", "window", "doctor", "market", "bicycle", "painting", "storm"]
VERBS = ["is", "was", "seems", "looked", "felt"]
ADJECTIVES = ["good", "cold", "quiet", "fast", "bright", "useful", "cheap", "strong", "clean", "friendly",
              "safe", "fresh", "simple", "warm", "heavy", "famous"]
TASK = """\
name: negation
kind: classification
format: csv
fields: [sentence]
label_field: negated
labels: ["no", "yes"]
metrics: [accuracy]
max_length: 16
files: {{train: {data}/train.csv, eval: {data}/dev.csv}}
"""
# What the test asks for: accuracy at least this far above the trivial (majority-class) baseline.
MARGIN = 0.3


def write_task(root: Path) -> Path:
    """A user task (config dir + csv files), as a user would add one. Train and dev share no
    (noun, adjective) pair: the dev score is generalisation, not memory."""
    rng = random.Random(0)
    pairs = [(n, a) for n in NOUNS for a in ADJECTIVES]
    rng.shuffle(pairs)
    splits = {"train": pairs[:160], "dev": pairs[160:240]}
    data = root / "data"
    data.mkdir()
    for split, split_pairs in splits.items():
        lines = ["sentence,negated"]
        for i, (noun, adjective) in enumerate(split_pairs):
            verb = rng.choice(VERBS)
            negated = i % 2 == 1
            lines.append(f"the {noun} {verb}{' not' if negated else ''} {adjective},{'yes' if negated else 'no'}")
        (data / f"{split}.csv").write_text("\n".join(lines) + "\n")
    conf = root / "conf" / "target"
    conf.mkdir(parents=True)
    (conf / "negation.yaml").write_text(TASK.format(data=data))
    return conf.parent


@pytest.mark.slow
def test_minilm_learns_a_task_it_can_learn(tmp_path, cache_dir, monkeypatch):
    conf = write_task(tmp_path)
    cfg = compose_config([f"hydra.searchpath=[file://{conf}]", "target=negation", "intermediate=none",
                          "model=minilm_l6", "seed=0", "optim.lr=1e-4", "optim.warmup_ratio=0.1",
                          "data.batch_size=16", "trainer.max_epochs=3", "trainer.enable_progress_bar=false"],
                         cache_dir=cache_dir, output_dir=tmp_path / "out")
    # Spies, not mocks: the real functions run; the test keeps the weights before and after.
    before, trained = {}, []
    real_load = stage.load_head_model

    def load_head_model(*args, **kwargs):
        model = real_load(*args, **kwargs)
        before.update({n: p.detach().clone() for n, p in model.named_parameters()})
        return model

    monkeypatch.setattr(stage, "load_head_model", load_head_model)
    spy_stages(monkeypatch, lambda real, **kw: trained.append(real(**kw)) or trained[-1])
    run(cfg)

    m = json.loads((tmp_path / "out" / METRICS_FILE).read_text())
    assert m["split"]["train_examples"] == 160 and m["split"]["eval_examples"] == 80
    assert m["trivial_baseline"] == pytest.approx(0.5)  # balanced dev set
    assert m["best_dev_metric"] >= m["trivial_baseline"] + MARGIN, m["dev_metric_per_epoch"]
    assert m["status"] == "ok"
    # trainer=cpu's own precision: bf16 autocast on a CPU with native bf16 (AVX512-BF16, AMX), else fp32
    assert m["device"]["precision"] == cpu_precision() == ("bf16-mixed" if native_bf16() else "32-true")
    # Every weight took part: the head and each encoder layer moved away from where they started.
    after = dict(trained[0].module.model.named_parameters())
    assert after.keys() == before.keys()
    unchanged = [n for n, p in after.items() if torch.equal(p.detach(), before[n])]
    assert unchanged == [], unchanged
