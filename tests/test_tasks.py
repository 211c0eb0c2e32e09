"""The task suite: every task YAML reads its real files with the counts in shared/data/MANIFEST.md,
frames its examples as intended, and runs one short target stage with the real MiniLM. A task the
user defines in their own config directory works the same way, with no code change."""
import json
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from stilts_lab.checks import check_config
from stilts_lab.data.tasks import load_task, shuffle_choices
from stilts_lab.errors import DataError
from stilts_lab.pipeline import SPLITS_FILE, run
from stilts_lab.results import METRICS_FILE
from tests.conftest import CONF, REPO, compose_config

# realfake*: built by the generator, not read from the data root (tests/test_synth.py, test_controlled.py)
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml") if p.stem != "none" and not p.stem.startswith("realfake"))

# (train rows, eval rows, carved) as read here; carved tasks split their one file 70/30 under split_seed 0.
COUNTS = {
    "rte": (2490, 277, False), "cola": (8551, 1043, False), "mrpc": (3668, 408, False),
    "stsb": (5749, 1500, False), "cb": (250, 56, False), "copa": (400, 100, False),
    "wic": (447, 191, True),                 # 638 val rows
    "socialiqa": (1368, 586, True),          # 1,954 dev rows
    "cosmosqa": (2089, 896, True),           # 2,985 valid rows
    "hellaswag": (2358, 1010, True),         # the 3,368-row train prefix
    "hellaswag_p": (2358, 1010, True),
    "winogrande_xs": (160, 1267, False), "winogrande_s": (640, 1267, False),
    "winogrande_m": (2558, 1267, False), "winogrande_l": (10234, 1267, False),
}
# Label counts from MANIFEST.md, by class index (the YAML's label order); "all" = train + eval of a carved file.
LABELS = {
    "rte": ("train", {0: 1249, 1: 1241}), "cola": ("train", {0: 2528, 1: 6023}),
    "mrpc": ("train", {0: 1194, 1: 2474}), "cb": ("train", {0: 115, 1: 119, 2: 16}),
    "copa": ("train", {0: 195, 1: 205}), "wic": ("all", {0: 319, 1: 319}),
    "hellaswag": ("all", {0: 824, 1: 855, 2: 847, 3: 842}),
    "hellaswag_p": ("all", {0: 824, 1: 855, 2: 847, 3: 842}),
}
MULTIPLE_CHOICE = {"copa": 2, "socialiqa": 3, "cosmosqa": 4, "hellaswag": 4, "hellaswag_p": 4,
                   "winogrande_xs": 2, "winogrande_s": 2, "winogrande_m": 2, "winogrande_l": 2}


def task_config(name: str) -> dict:
    return OmegaConf.to_container(compose_config([f"target={name}"]).target, resolve=True)


def load(name: str, data_dir):
    return load_task(task_config(name), data_dir=str(data_dir), split_seed=0)


def test_suite_is_complete():
    assert set(TASKS) == set(COUNTS), "a new task YAML needs its expected row counts in COUNTS"


@pytest.mark.parametrize("name", TASKS)
def test_task_yaml_names_everything(name):
    header = [line for line in (CONF / "task" / f"{name}.yaml").read_text().splitlines()[:3] if line.startswith("#")]
    assert any("python -m stilts_lab" in line and f"={name}" in line for line in header)  # the command that runs it
    task = task_config(name)
    assert task["name"] == name and task["kind"] in ("classification", "regression", "multiple_choice")
    assert task["metrics"] and task["max_length"] > 0 and task["files"]["eval"]
    assert task["hf_dataset"]["path"] and task["hf_dataset"]["train"] and task["hf_dataset"]["eval"]
    assert task["fields"] is not None and task["label_field"]
    if task["kind"] == "classification":
        assert len(task["labels"]) >= 2
    # the same YAML serves as an intermediate task
    assert OmegaConf.to_container(compose_config([f"intermediate={name}"]).intermediate)["name"] == name


@pytest.mark.parametrize("name", TASKS)
def test_reader_counts_on_real_files(name, data_dir, caplog):
    data = load(name, data_dir)
    n_train, n_eval, carved = COUNTS[name]
    assert (len(data.train.examples), len(data.eval.examples), data.carved) == (n_train, n_eval, carved)
    assert ("carved" in caplog.text) == carved  # a carved split is said in the log
    if name in LABELS:
        which, expected = LABELS[name]
        examples = data.train.examples + (data.eval.examples if which == "all" else [])
        assert Counter(ex["label"] for ex in examples) == expected
    if name in MULTIPLE_CHOICE:
        n = MULTIPLE_CHOICE[name]
        assert all(len(ex["choices"]) == n and 0 <= ex["label"] < n for ex in data.train.examples)


@pytest.mark.parametrize("name, split, label_file", [
    ("socialiqa", "all", "socialiqa/dev-labels.lst"), ("winogrande_xs", "eval", "winogrande/dev-labels.lst"),
    ("winogrande_m", "train", "winogrande/train_m-labels.lst")])
def test_labels_agree_with_the_label_files(name, split, label_file, data_dir):
    """SocialIQA takes its labels from the .lst file; WinoGrande from the jsonl's answer field,
    which must agree with its own .lst file."""
    data = load(name, data_dir)
    examples = {"train": data.train.examples, "eval": data.eval.examples,
                "all": data.train.examples + data.eval.examples}[split]
    expected = Counter(int(x) - 1 for x in (data_dir / label_file).read_text().split())
    assert Counter(ex["label"] for ex in examples) == expected


def test_socialiqa_first_dev_row(data_dir):
    task = task_config("socialiqa")
    task["files"] = {"train": "socialiqa/dev.jsonl", "eval": "socialiqa/dev.jsonl"}  # no carving: file order
    task["transforms"][0]["label_file"]["train"] = "socialiqa/dev-labels.lst"
    ex = load_task(task, data_dir=str(data_dir), split_seed=0).eval.examples[0]
    assert ex["label"] == 2  # dev-labels.lst line 1 says 3
    assert ex["choices"][2] == ["Tracy didn't go home that evening and resisted Riley's attacks. "
                                "What does Tracy need to do before this?", "Find somewhere to go"]


def test_winogrande_choice_is_the_sentence_with_the_option(data_dir):
    dev = load("winogrande_xs", data_dir).eval.examples
    assert dev[0] == {"choices": [["Sarah was a much better surgeon than Maria so Sarah always got the easier cases.", None],
                                  ["Sarah was a much better surgeon than Maria so Maria always got the easier cases.", None]],
                      "label": 1}
    assert not any("_" in c[0] for ex in dev for c in ex["choices"])


def test_hellaswag_p_sees_endings_only(data_dir):
    full, partial = load("hellaswag", data_dir), load("hellaswag_p", data_dir)
    for a, b in zip(full.train.examples[:50], partial.train.examples[:50]):
        assert a["label"] == b["label"]
        assert all(cb == [ca[1], None] for ca, cb in zip(a["choices"], b["choices"]))  # the ending, nothing else
        assert a["choices"][0][0]  # ...while hellaswag keeps its context


def test_stsb_labels_are_floats_in_range(data_dir):
    data = load("stsb", data_dir)
    labels = [ex["label"] for ex in data.train.examples + data.eval.examples]
    assert all(isinstance(x, float) and 0 <= x <= 5 for x in labels)
    assert data.eval.examples[0] == {"segments": ["A man with a hard hat is dancing.",
                                                  "A man wearing a hard hat is dancing."], "label": 5.0}


def test_pair_and_choice_framing(data_dir):
    assert load("copa", data_dir).eval.examples[0] == {"choices": [
        ["The man turned on the faucet. What happened as a result?", "The toilet filled with water."],
        ["The man turned on the faucet. What happened as a result?", "Water flowed from the spout."]], "label": 1}
    wic = task_config("wic")
    wic["files"] = {"train": "wic/val.jsonl", "eval": "wic/val.jsonl"}  # file order
    assert load_task(wic, data_dir=str(data_dir), split_seed=0).eval.examples[0] == {"segments": [
        "class: An emerging professional class.",
        "Apologizing for losing your temper, even though you were badly provoked, showed real class."], "label": 0}
    mrpc = load("mrpc", data_dir).eval.examples[0]
    assert mrpc["label"] == 1 and mrpc["segments"][0].startswith("He said the foodservice pie business")
    cola = load("cola", data_dir).eval.examples[0]
    assert cola == {"segments": ["The sailors rode the breeze clear of the rocks."], "label": 1}


def test_carving_is_deterministic_under_the_split_seed(data_dir):
    a, b = load("wic", data_dir), load("wic", data_dir)
    c = load_task(task_config("wic"), data_dir=str(data_dir), split_seed=1)
    assert a.train.examples == b.train.examples and a.train.examples != c.train.examples
    assert a.train.fingerprint_parts != c.train.fingerprint_parts  # so the tokenization cache tells them apart
    # train and eval partition the file: every row once, none in both
    whole = task_config("wic")
    whole["files"] = {"train": "wic/val.jsonl", "eval": "wic/val.jsonl"}
    rows = load_task(whole, data_dir=str(data_dir), split_seed=0).eval.examples
    as_text = lambda examples: Counter(json.dumps(ex) for ex in examples)
    assert as_text(a.train.examples) + as_text(a.eval.examples) == as_text(rows)


@pytest.mark.parametrize("name", sorted(MULTIPLE_CHOICE))
def test_choices_are_shuffled_under_the_seed(name, data_dir):
    examples = load(name, data_dir).eval.examples[:200]
    shuffled = shuffle_choices(examples, 0)
    assert shuffled == shuffle_choices(examples, 0) != shuffle_choices(examples, 1)
    for before, after in zip(examples, shuffled):  # the right answer moves with its label
        assert after["choices"][after["label"]] == before["choices"][before["label"]]
        assert sorted(map(str, after["choices"])) == sorted(map(str, before["choices"]))
    # wherever the file put the answer, no position carries it after shuffling
    positions = Counter(ex["label"] for ex in shuffled)
    assert len(positions) == MULTIPLE_CHOICE[name] and max(positions.values()) < 0.7 * len(shuffled)


def copy_with_bad_row(data_dir, root, task_dir, bad_file, other_file, index, field, value):
    """A data root holding `task_dir` as in `data_dir`, but with one field of one row of `bad_file` changed."""
    rows = (data_dir / task_dir / bad_file).read_text().splitlines()
    rows[index] = json.dumps(json.loads(rows[index]) | {field: value})
    (root / task_dir).mkdir()
    (root / task_dir / bad_file).write_text("\n".join(rows) + "\n")
    (root / task_dir / other_file).write_text((data_dir / task_dir / other_file).read_text())


def test_unknown_label_names_file_and_line(tmp_path, data_dir):
    copy_with_bad_row(data_dir, tmp_path, "cb", "val.jsonl", "train.jsonl", 2, "label", "maybe")
    with pytest.raises(DataError, match=r"cb/val\.jsonl:3: unknown label 'maybe'"):
        load("cb", tmp_path)


def test_unknown_choice_code_names_file_and_line(tmp_path, data_dir):
    copy_with_bad_row(data_dir, tmp_path, "copa", "train.jsonl", "val.jsonl", 4, "question", "reason")
    with pytest.raises(DataError, match=r"copa/train\.jsonl:5: question='reason'"):
        load("copa", tmp_path)


# One optimizer step per task with the real MiniLM; max_length 32 keeps each run to seconds.
STEP = ["target.train_size=8", "target.eval_size=8", "trainer.max_epochs=1", "data.batch_size=8",
        "target.max_length=32", "trainer.enable_progress_bar=false"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [t for t in TASKS if t != "rte"])  # rte: tests/test_pipeline.py
def test_one_step_pipeline_run(name, tmp_path, data_dir, cache_dir):
    task = task_config(name)
    metrics = run(compose_config([f"target={name}"] + STEP, data_dir=data_dir, cache_dir=cache_dir,
                                 output_dir=tmp_path))
    saved = json.loads((tmp_path / METRICS_FILE).read_text())
    assert saved["best_dev_metric"] == metrics["best_dev_metric"]
    assert saved["metric_name"] == task["metrics"][0] and saved["status"] in ("ok", "diverged")
    assert saved["split"]["train_examples"] == 8 and saved["split"]["eval_examples"] == 8
    assert saved["split"]["carved"] == COUNTS[name][2]
    if saved["split"]["carved"]:
        assert "carved" in saved["split"]["train"] and "carved" in saved["split"]["eval"]
    assert set(saved["dev_metrics_per_epoch"][0]) == set(task["metrics"])
    # splits.json names the 8 + 8 source rows, real lines of real files, and a carved file's train
    # and eval rows never meet
    splits = json.loads((tmp_path / SPLITS_FILE).read_text())["target"]
    for which in ("train", "eval"):
        rows, path = splits[which]["rows"], Path(splits[which]["file"])
        assert len(rows) == len(set(rows)) == 8 and path.is_file(), which
        assert min(rows) >= 1 and max(rows) <= len(path.read_text(encoding="utf-8").splitlines()), which
    if saved["split"]["carved"]:
        assert splits["train"]["file"] == splits["eval"]["file"]
        assert not set(splits["train"]["rows"]) & set(splits["eval"]["rows"])


USER_TASK = """\
# python -m stilts_lab --config-dir {conf} target=polarity
# A user's own task: their files, a known format and kind, no code change.
name: polarity
kind: classification
format: csv
fields: [title_review, topic]
label_field: verdict
labels: ["no", "yes"]   # quoted: YAML reads a bare yes/no as a boolean
metrics: [accuracy, f1]
max_length: 32
files:                  # relative to the data root, or absolute
  train: {data}/train.csv
  eval: {data}/dev.csv
transforms:
  - {{name: fill_template, into: title_review, template: "{{title}}. {{review}}"}}
hf_dataset: {{path: someone/polarity, train: train, eval: validation}}
"""


def write_user_task(root: Path) -> Path:
    """The user's config dir (target/polarity.yaml, and intermediate/ as a link to it) and data
    files, outside the repository and outside the data root."""
    conf, data = root / "my_conf", root / "my_data"
    (conf / "target").mkdir(parents=True)
    (conf / "intermediate").symlink_to("target")
    (conf / "target" / "polarity.yaml").write_text(USER_TASK.format(conf=conf, data=data))
    data.mkdir()
    for split, n in (("train", 16), ("dev", 8)):
        lines = ["title,review,topic,verdict"] + [
            f'Item {i},"{"Loved it, would buy again" if i % 2 else "Broke after a day, sadly"}",'
            f'{"toys" if i % 3 else "tools"},{"yes" if i % 2 else "no"}' for i in range(n)]
        (data / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return conf


@pytest.mark.slow
def test_user_defined_task_from_own_config_dir(tmp_path, data_dir, cache_dir):
    conf = write_user_task(tmp_path)
    searchpath = f"hydra.searchpath=[file://{conf}]"
    cfg = compose_config(["target=polarity", searchpath, "data.batch_size=8", "trainer.max_epochs=1",
                          "trainer.enable_progress_bar=false"],
                         data_dir=data_dir, cache_dir=cache_dir, output_dir=tmp_path / "out")
    assert cfg.target.name == "polarity" and cfg.target.eval_size is None  # stage defaults merged in
    task = OmegaConf.to_container(cfg.target, resolve=True)
    row1 = load_task(task, data_dir=str(data_dir), split_seed=0).train.examples[1]
    assert row1 == {"segments": ["Item 1. Loved it, would buy again", "toys"], "label": 1}
    run(cfg)
    saved = json.loads((tmp_path / "out" / METRICS_FILE).read_text())
    assert saved["target"] == "polarity" and saved["split"]["train_examples"] == 16
    assert saved["split"]["eval_examples"] == 8 and set(saved["dev_metrics_per_epoch"][0]) == {"accuracy", "f1"}
    # the same file serves as an intermediate task, next to a built-in target
    both = compose_config(["intermediate=polarity", "target=cola", searchpath])
    check_config(both)
    assert both.intermediate.name == "polarity" and "max_epochs" in both.intermediate  # stage keys merged in


def test_docs_list_every_task():
    doc = (REPO / "docs" / "tasks.md").read_text()
    missing = [t for t in TASKS if f"`{t}`" not in doc]
    assert not missing, f"docs/tasks.md does not describe {missing}"
