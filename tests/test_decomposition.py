"""+experiment=realfake_decomposition: it composes into the six arms with two intermediate seeds each, and
every arm runs as intermediate and as target. One tiny real run per arm (the embedded MiniLM, 4 + 4
examples, one step per stage; SmolLM2 for the generated arms), arranged in a cycle so that each arm
is once the intermediate task and once the target; the builds are shared through one cache."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from stilts_lab.checks import check_config
from stilts_lab.pipeline import COMPLETE_FILE, run
from stilts_lab.synth.realfake import PROVENANCE_FILE
from tests.conftest import CONF, compose_config

ARMS = ["none", "realfake_paper", "realfake", "realfake_swapped", "realfake_p", "hellaswag_p"]
# intermediate -> target: every arm but vanilla once on each side
CYCLE = [("realfake_paper", "realfake"), ("realfake", "realfake_swapped"), ("realfake_swapped", "realfake_p"),
         ("realfake_p", "hellaswag_p"), ("hellaswag_p", "realfake_paper")]
# Both roles build 4 + 4 examples under seed 0 (intermediate.seed, data.split_seed), so realfake's set is
# built once for both sides and realfake_p's is the same; a pool of 4 keeps the filtered build small.
SIZES = ["train_size=4", "eval_size=4"]
FILTERED = ("realfake", "realfake_p")  # the arms whose build is adversarially filtered
SMALL_FILTER = ["adversarial_filter.pool=4", "adversarial_filter.rounds=1"]
TINY = ["intermediate.max_steps=1", "intermediate.batch_size=4", "intermediate.seed=0", "data.split_seed=0",
        "data.batch_size=4", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "resume=false"]


def test_the_experiment_sweeps_six_arms_and_two_intermediate_seeds(data_dir):
    header = (CONF / "experiment" / "realfake_decomposition.yaml").read_text().splitlines()[:4]
    assert header[0] == "# @package _global_"
    assert any("python -m stilts_lab -m +experiment=realfake_decomposition" in line for line in header)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", ["+experiment=realfake_decomposition"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params["intermediate"].split(",") == ARMS
    assert len(params["intermediate.seed"].split(",")) >= 2
    assert list(params)[-1] == "intermediate"  # the arms vary fastest: an interrupted sweep keeps them alike
    for arm in ARMS:  # each arm, with the experiment's stage and grid, passes the trial's checks
        check_config(compose_config(["+experiment=realfake_decomposition", f"intermediate={arm}"],
                                    data_dir=data_dir))
    arm = compose_config(["+experiment=realfake_decomposition", "intermediate=realfake"]).intermediate
    assert arm.fakes == "controlled" and arm.adversarial_filter.pool > arm.num_fakes
    assert (arm.train_size, arm.eval_size) == (500, 100)  # small_grid's stage (intermediate_stage/minilm_cpu)


@pytest.fixture(scope="module")
def runs(cache_dir, data_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("decomposition")
    results = {}
    for intermediate, target in CYCLE:
        overrides = [f"intermediate={intermediate}", f"target={target}", *TINY]
        overrides += [f"{role}.{s}" for role, name in (("intermediate", intermediate), ("target", target))
                      for s in SIZES + (SMALL_FILTER if name in FILTERED else [])]
        cfg = compose_config(overrides, data_dir=data_dir, cache_dir=cache_dir,
                             output_dir=out / f"{intermediate}-{target}")
        results[intermediate, target] = run(cfg)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("intermediate,target", CYCLE, ids=[f"{a}-to-{b}" for a, b in CYCLE])
def test_every_arm_runs_as_intermediate_and_as_target(runs, intermediate, target):
    metrics = runs[intermediate, target]
    assert metrics["error"] is None and metrics["status"] in ("ok", "diverged"), metrics["error"]
    assert metrics["intermediate"] == intermediate and metrics["target"] == target
    assert len(metrics["dev_metric_per_epoch"]) == 1 and metrics["split"]["eval_examples"] == 4
    stage = json.loads((Path(metrics["intermediate_checkpoint"]["path"]) / COMPLETE_FILE).read_text())
    assert stage["train_examples"] == 4 and stage["eval_examples"] == 4


@pytest.mark.slow
def test_the_arms_read_the_sets_they_name(runs):
    """realfake and realfake_p share one build, on either side; each set's provenance says its recipe."""
    def built(metrics, role):
        if role == "intermediate":
            stage = json.loads((Path(metrics["intermediate_checkpoint"]["path"]) / COMPLETE_FILE).read_text())
            return Path(stage["realfake_file"]).parent
        return Path(metrics["split"]["train"].split(" (")[0]).parent

    sets = {("intermediate", a): built(m, "intermediate") for (a, _), m in runs.items() if a.startswith("realfake")}
    sets |= {("target", b): built(m, "target") for (_, b), m in runs.items() if b.startswith("realfake")}
    assert sets["intermediate", "realfake"] == sets["intermediate", "realfake_p"] == sets["target", "realfake"] \
        == sets["target", "realfake_p"]
    fakes = {where: json.loads((folder / PROVENANCE_FILE).read_text())["fakes"] for where, folder in sets.items()}
    assert fakes["intermediate", "realfake_paper"] == fakes["target", "realfake_paper"] == "paper"
    assert fakes["intermediate", "realfake_swapped"] == fakes["target", "realfake_swapped"] == "swapped"
    provenance = json.loads((sets["target", "realfake"] / PROVENANCE_FILE).read_text())
    assert provenance["fakes"] == "controlled" and provenance["adversarial_filter"] == {"pool": 4, "rounds": 1}
    assert [h["round"] for h in provenance["adversarial_filter_report"]["history"]] == [0, 1]
