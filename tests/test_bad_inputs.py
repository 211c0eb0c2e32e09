"""A corpus of bad inputs, as a new user would make them: each ends in one clear error naming the
file and line or the config key (a StiltsError: `error:` line, exit 1, no traceback), with nothing
left behind that looks finished; or, where the input is usable, a warning and a correct run.

Most cases run in-process through the real Hydra composition and pipeline.run (they stop before any
model is loaded); a few run as real commands to hold the CLI contract (one `error:` line on stderr,
exit code 1, no traceback)."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from stilts_lab.errors import StiltsError
from stilts_lab.pipeline import run
from stilts_lab.results import METRICS_FILE
from tests.conftest import REPO, compose_config

FAST = ["target.train_size=16", "target.eval_size=16", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
REALFAKE = ["intermediate=realfake", "intermediate.train_size=8", "intermediate.eval_size=4"]
COPA_INTERMEDIATE = ["intermediate=copa", "intermediate.train_size=16", "intermediate.eval_size=8",
                     "intermediate.max_steps=2", "intermediate.batch_size=8"]


@dataclass
class Case:
    id: str
    overrides: list[str]
    expect: str                                     # regex the error message must match
    files: dict[str, bytes] = field(default_factory=dict)   # data-root-relative path -> new content
    task_yaml: str | None = None                    # a user task, selected as target=mytask


def lines_of(rel: str, data_dir: Path) -> list[bytes]:
    return (data_dir / rel).read_bytes().splitlines(keepends=True)


def edited(rel: str, data_dir: Path, edit) -> dict[str, bytes]:
    return {rel: b"".join(edit(lines_of(rel, data_dir)))}


def jsonl_edit(rel, data_dir, index, change) -> dict[str, bytes]:
    """Row `index` (0-based; file line index + 1) of a JSONL file, changed by `change(row) -> row or text`."""
    def edit(lines):
        row = change(json.loads(lines[index]))
        lines[index] = (row if isinstance(row, str) else json.dumps(row)).encode() + b"\n"
        return lines
    return edited(rel, data_dir, edit)


# A user task as in docs/guide.md (a CSV in the data root); each case below drops one required key.
USER_TASK = {"name": "mytask", "kind": "classification", "format": "csv", "fields": "[review]",
             "label_field": "verdict", "labels": '["no", "yes"]', "metrics": "[accuracy]", "max_length": "64",
             "files": "{train: mytask/train.csv, eval: mytask/dev.csv}"}
USER_ROWS = b"review,verdict\n" + b"".join(b"a fine film number %d,yes\nawful film number %d,no\n" % (i, i)
                                           for i in range(12))


def user_task(drop: str) -> str:
    return "".join(f"{k}: {v}\n" for k, v in USER_TASK.items() if k != drop)


def cases(data_dir: Path) -> list[Case]:
    rte, stsb, copa = "rte/train.tsv", "stsb/train.tsv", "copa/train.jsonl"
    hellaswag = "hellaswag/hellaswag_train.first3368.jsonl"
    header = lines_of(rte, data_dir)[0]
    c = [
        # -- config values of every type: integers, seeds, numbers, fractions, choices, booleans
        Case("seed-negative", ["seed=-1"], r"^seed=-1 is impossible: expected an integer in \[0, 4294967295\]"),
        Case("seed-too-large", ["seed=4294967296"], r"^seed=4294967296 is impossible"),
        Case("seed-text", ["seed=abc"], r"^seed='abc' is impossible"),
        Case("seed-fraction", ["seed=1.5"], r"^seed=1.5 is impossible"),
        Case("split-seed-text", ["data.split_seed=abc"], r"^data.split_seed='abc' is impossible"),
        Case("lr-zero", ["optim.lr=0"], r"^optim.lr=0 is impossible: expected a positive number"),
        Case("lr-text", ["optim.lr=fast"], r"^optim.lr='fast' is impossible"),
        Case("lr-inf", ["optim.lr=inf"], r"^optim.lr=inf is impossible"),
        Case("warmup-above-one", ["optim.warmup_ratio=1.5"], r"^optim.warmup_ratio=1.5 is impossible: expected a fraction"),
        Case("weight-decay-negative", ["optim.weight_decay=-0.1"], r"^optim.weight_decay=-0.1 is impossible"),
        Case("batch-size-zero", ["data.batch_size=0"], r"^data.batch_size=0 is impossible: expected a positive integer"),
        Case("batch-size-fraction", ["data.batch_size=2.5"], r"^data.batch_size=2.5 is impossible"),
        Case("num-workers-negative", ["data.num_workers=-1"], r"^data.num_workers=-1 is impossible"),
        Case("epochs-zero", ["trainer.max_epochs=0"], r"^trainer.max_epochs=0 is impossible"),
        Case("epochs-boolean", ["trainer.max_epochs=true"], r"^trainer.max_epochs=True is impossible"),
        Case("precision-unknown", ["trainer.precision=fp8"], r"^trainer.precision='fp8' is impossible: expected one of"),
        Case("precision-fp16", ["trainer.precision=16-mixed"], r"^trainer.precision=16-mixed is not supported: train in bf16-mixed"),
        Case("accelerator-unknown", ["trainer.accelerator=tpu9"], r"^trainer.accelerator='tpu9' is impossible"),
        Case("clip-negative", ["trainer.gradient_clip_val=-1"], r"^trainer.gradient_clip_val=-1 is impossible"),
        Case("devices-two", ["trainer.devices=2"], r"^trainer.devices=2 is not supported: training runs on one device"),
        Case("devices-auto", ["trainer.devices=auto"], r"^trainer.devices='auto' is not supported"),
        Case("compile-unknown", ["trainer.compile=bogus"], r"^trainer.compile='bogus' is impossible: expected null, true or one of default"),
        Case("threads-zero", ["trainer.num_threads=0"], r"^trainer.num_threads=0 is impossible"),
        Case("progress-bar-text", ["trainer.enable_progress_bar=sometimes"], r"^trainer.enable_progress_bar='sometimes'"),
        Case("resume-text", ["resume=maybe"], r"^resume='maybe' is impossible: expected true or false"),
        Case("train-size-negative", ["target.train_size=-5"], r"^target.train_size=-5 is impossible"),
        Case("eval-size-text", ["target.eval_size=all"], r"^target.eval_size='all' is impossible"),
        Case("max-length-zero", ["target.max_length=0"], r"target.max_length of task 'rte' is 0"),
        Case("max-length-below-special-tokens", ["target.max_length=3"], r"^target.max_length=3 is impossible: expected an integer above 3"),
        Case("max-length-above-encoder", ["target.max_length=100000"], r"^target.max_length=100000 is impossible: expected at most 512"),
        Case("metric-unknown", ["target.metrics=[accuracy,bleu]"], r"^target.metrics of task 'rte': unknown metric\(s\) \['bleu'\]"),
        Case("kind-unknown", ["target.kind=ranking"], r"^target.kind of task 'rte' is 'ranking'"),
        Case("format-unknown", ["target.format=xml"], r"^target.format of task 'rte' is 'xml'"),
        Case("transform-unknown", ["+target.transforms=[shout]"], r"^target.transforms of task 'rte': unknown transform 'shout'"),
        Case("target-none", ["target=none"], r"^target=none is not a task"),
        Case("intermediate-max-steps-zero", COPA_INTERMEDIATE + ["intermediate.max_steps=0"], r"^intermediate.max_steps=0 is impossible"),
        Case("intermediate-lr-negative", COPA_INTERMEDIATE + ["intermediate.lr=-1"], r"^intermediate.lr=-1 is impossible"),
        Case("intermediate-seed-negative", COPA_INTERMEDIATE + ["intermediate.seed=-3"], r"^intermediate.seed=-3 is impossible"),
        # -- generator settings of the real-fake builder
        Case("top-p-zero", REALFAKE + ["generator.top_p=0"], r"^generator.top_p=0 is impossible: expected a number in \(0, 1\]"),
        Case("top-p-negative", REALFAKE + ["generator.top_p=-0.1"], r"^generator.top_p=-0.1 is impossible"),
        Case("top-p-above-one", REALFAKE + ["generator.top_p=1.5"], r"^generator.top_p=1.5 is impossible"),
        Case("temperature-zero", REALFAKE + ["generator.temperature=0"], r"^generator.temperature=0 is impossible"),
        Case("temperature-negative", REALFAKE + ["generator.temperature=-1"], r"^generator.temperature=-1 is impossible"),
        Case("top-k-negative", REALFAKE + ["generator.top_k=-1"], r"^generator.top_k=-1 is impossible"),
        Case("num-fakes-zero", REALFAKE + ["intermediate.num_fakes=0"], r"^intermediate.num_fakes=0 is impossible"),
        Case("words-min-above-max", REALFAKE + ["intermediate.words_min=40"], r"^intermediate.words_min=40 is impossible: it is above"),
        # -- data files
        Case("file-empty", [], r"rte/train.tsv: empty file$", files={rte: b""}),
        Case("file-header-only", [], r"rte/train.tsv: no data rows \(the file holds only a header line\)", files={rte: header}),
        Case("file-binary", [], r"rte/train.tsv:\d+: not UTF-8 text \(byte 0x[0-9a-f]{2}\); looks like a binary file",
             files={rte: bytes(range(256)) * 8}),
        Case("file-utf16", [], r"rte/train.tsv: not UTF-8 text \(looks like UTF-16\)",
             files={rte: (data_dir / rte).read_text(encoding="utf-8").encode("utf-16")}),
        Case("file-utf16-no-bom", [], r"rte/train.tsv: not UTF-8 text \(looks like UTF-16\)",
             files={rte: (data_dir / rte).read_text(encoding="utf-8").encode("utf-16-le")}),
        Case("file-latin1", [], r"rte/train.tsv:4: not UTF-8 text \(byte 0xe9\); save it as UTF-8",
             files=edited(rte, data_dir, lambda ls: ls[:3] + ["7\tUn café.\tA café.\tentailment\n".encode("latin-1")] + ls[3:])),
        Case("columns-renamed", [], r"rte/train.tsv:2: row lacks field\(s\) \['sentence1'\] named by task 'rte' \(the row has: index, premise",
             files=edited(rte, data_dir, lambda ls: [ls[0].replace(b"sentence1", b"premise")] + ls[1:])),
        Case("fields-missing-in-row", [], r"rte/train.tsv:6: expected 4 tab-separated fields",
             files=edited(rte, data_dir, lambda ls: ls[:5] + [b"17\tonly two fields\n"] + ls[5:])),
        Case("label-unknown", [], r"rte/train.tsv:4: unknown label 'maybe' for task 'rte'",
             files=edited(rte, data_dir, lambda ls: ls[:3] + [ls[3].replace(b"entailment", b"maybe")] + ls[4:])),
        Case("regression-label-nan", ["target=stsb"], r"stsb/train.tsv:3: label 'nan' is not a finite number",
             files=edited(stsb, data_dir, lambda ls: ls[:2] + [ls[2].rsplit(b"\t", 1)[0] + b"\tnan\n"] + ls[3:])),
        Case("regression-label-inf", ["target=stsb"], r"stsb/train.tsv:3: label 'inf' is not a finite number",
             files=edited(stsb, data_dir, lambda ls: ls[:2] + [ls[2].rsplit(b"\t", 1)[0] + b"\tinf\n"] + ls[3:])),
        Case("regression-label-text", ["target=stsb"], r"stsb/train.tsv:3: label 'high' is not a number",
             files=edited(stsb, data_dir, lambda ls: ls[:2] + [ls[2].rsplit(b"\t", 1)[0] + b"\thigh\n"] + ls[3:])),
        Case("choices-one-more", ["target=hellaswag"],
             r"hellaswag_train.first3368.jsonl:3: 5 choices, but earlier rows have 4 \(as at .*:1\)",
             files=jsonl_edit(hellaswag, data_dir, 2, lambda r: r | {"endings": r["endings"] + ["and one more."]})),
        Case("jsonl-malformed", ["target=copa"], r"copa/train.jsonl:5: malformed JSON",
             files=jsonl_edit(copa, data_dir, 4, lambda r: json.dumps(r)[:-3])),
        Case("jsonl-not-object", ["target=copa"], r"copa/train.jsonl:5: expected a JSON object, found list",
             files=jsonl_edit(copa, data_dir, 4, lambda r: [r])),
        Case("jsonl-text-null", ["target=copa"], r"copa/train.jsonl:5: field\(s\) \['premise'\] hold no text",
             files=jsonl_edit(copa, data_dir, 4, lambda r: r | {"premise": None})),
        Case("choice-label-out-of-range", ["target=copa"], r"copa/train.jsonl:5: label 2 points past the 2 choices",
             files=jsonl_edit(copa, data_dir, 4, lambda r: r | {"label": 2})),
        Case("transform-value-unknown", ["target=copa"], r"copa/train.jsonl:5: question='why' is not one of",
             files=jsonl_edit(copa, data_dir, 4, lambda r: r | {"question": "why"})),
        Case("label-file-short", ["target=socialiqa"], r"socialiqa/dev-labels.lst: 1953 labels for 1954 rows",
             files=edited("socialiqa/dev-labels.lst", data_dir, lambda ls: ls[:-1])),
        Case("winogrande-no-blank", ["target=winogrande_xs"], r"winogrande/train_xs.jsonl:2: sentence has no '_' blank",
             files=jsonl_edit("winogrande/train_xs.jsonl", data_dir, 1, lambda r: r | {"sentence": "No blank here."})),
        Case("csv-extra-field", ["target=cosmosqa"], r"cosmosqa/valid.csv:\d+: expected 8 comma-separated fields",
             files=edited("cosmosqa/valid.csv", data_dir, lambda ls: ls[:1] + [ls[1].rstrip(b"\r\n") + b",extra\n"] + ls[2:])),
        Case("dev-file-missing", [], r"task 'rte': no eval data: file not found: .*rte/dev.tsv.*STILTS_DATA_DIR",
             files={"rte/dev.tsv": None}),
    ]
    if not torch.cuda.is_available():  # the GPU trainer on a machine without one: one line, naming the way out
        c.append(Case("gpu-trainer-without-gpu", ["trainer=gpu"],
                      r"^trainer.accelerator=gpu but this machine has no CUDA GPU .* trainer.accelerator=cpu"))
    # -- a user task YAML missing each required key
    for key, expect in [("name", r"^target.name is missing"), ("kind", r"^target.kind of task 'mytask' is None"),
                        ("format", r"^target.format of task 'mytask' is None"),
                        ("fields", r"^target.fields of task 'mytask' is None: expected a list"),
                        ("labels", r"^target.labels of task 'mytask' is None: a classification task lists"),
                        ("metrics", r"^target.metrics of task 'mytask' is None"),
                        ("max_length", r"^target.max_length of task 'mytask' is None"),
                        ("files", r"^target.files of task 'mytask' is missing")]:
        c.append(Case(f"user-task-without-{key}", ["target=mytask"], expect, task_yaml=user_task(key)))
    return c


def data_root(tmp_path: Path, data_dir: Path, files: dict[str, bytes | None]) -> Path:
    """The real data root, linked file by file, with `files` replaced (None: removed)."""
    root = tmp_path / "data"
    for src in data_dir.rglob("*"):
        if src.is_file():
            dst = root / src.relative_to(data_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            rel = str(src.relative_to(data_dir))
            if rel not in files:
                dst.symlink_to(src)
    for rel, content in files.items():
        if content is not None:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(content)
    (root / "mytask").mkdir(exist_ok=True)
    (root / "mytask" / "train.csv").write_bytes(USER_ROWS)
    (root / "mytask" / "dev.csv").write_bytes(USER_ROWS)
    return root


def user_conf(tmp_path: Path, task_yaml: str | None) -> list[str]:
    """A user's own config dir holding target/mytask.yaml, searched after the package's configs."""
    if task_yaml is None:
        return []
    conf = tmp_path / "my_conf"
    (conf / "target").mkdir(parents=True)
    (conf / "target" / "mytask.yaml").write_text(task_yaml)
    return [f"hydra.searchpath=[file://{conf}]"]


def assert_nothing_finished(out: Path, cache: Path) -> None:
    """A failed run leaves a metrics.json that says failed, and no cache entry that looks complete."""
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["status"] == "failed" and metrics["error"] and isinstance(metrics["data_files"], dict)
    assert not list(cache.glob("intermediate/*/stage_metrics.json"))
    assert not list(cache.glob("realfake/*/examples.jsonl"))


def _ids(data_dir) -> list[str]:
    return [c.id for c in cases(data_dir)]


DATA_DIR = Path(os.environ.get("STILTS_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
CASES = {c.id: c for c in cases(DATA_DIR)} if (DATA_DIR / "rte").is_dir() else {}


def test_corpus_is_large_enough():
    assert len(CASES) >= 40, "the issue asks for at least 40 bad inputs"


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_bad_input_names_its_cause(case_id, tmp_path, data_dir):
    case = CASES[case_id]
    root = data_root(tmp_path, data_dir, case.files)
    out, cache = tmp_path / "out", tmp_path / "cache"
    cfg = compose_config(FAST + case.overrides + user_conf(tmp_path, case.task_yaml),
                         data_dir=root, cache_dir=cache, output_dir=out)
    with pytest.raises(StiltsError) as raised:
        run(cfg)
    message = str(raised.value)
    assert re.search(case.expect, message), message
    assert "\n" not in message  # one line
    assert_nothing_finished(out, cache)


def test_unknown_task_key_warns(data_dir, caplog):
    """A key no code reads is most likely a typo (here of `fields`): a warning, and the run goes on."""
    from stilts_lab.checks import check_config

    with caplog.at_level(logging.WARNING):
        check_config(compose_config(["+target.feilds=[sentence1]"], data_dir=data_dir))
    assert "target (task 'rte'): ignoring unknown key(s) ['feilds']" in caplog.text


# -- the command-line contract, on a few cases of each family


def cli(args, *, data_root_dir: Path, tmp_path: Path, sweep=False):
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "STILTS_DATA_DIR": str(data_root_dir),
           "STILTS_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    where = f"hydra.sweep.dir={tmp_path / 'sweep'}" if sweep else f"hydra.run.dir={tmp_path / 'run'}"
    return subprocess.run([sys.executable, "-m", "stilts_lab", *(["-m"] if sweep else []), where, *FAST, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case_id", ["seed-negative", "file-utf16", "user-task-without-fields", "top-p-zero",
                                     "compile-unknown"])
def test_command_prints_one_error_line(case_id, tmp_path, data_dir):
    case = CASES[case_id]
    root = data_root(tmp_path, data_dir, case.files)
    args = case.overrides + user_conf(tmp_path, case.task_yaml)
    r = cli(args, data_root_dir=root, tmp_path=tmp_path)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1, r.stderr[-2000:]
    assert len(errors) == 1 and re.search(case.expect.lstrip("^"), errors[0][len("error: "):]), r.stderr[-2000:]
    assert "Traceback" not in r.stderr + r.stdout
    assert_nothing_finished(tmp_path / "run", tmp_path / "cache")


def test_a_bad_config_answers_before_the_heavy_imports(tmp_path, data_dir):
    """The command checks the config before torch, Lightning and transformers load (seconds of
    imports), so a typo costs about a second; the check is the same one the pipeline runs."""
    probe = ("import runpy, sys\n"
             "sys.argv = ['stilts_lab', 'seed=-1', 'hydra.run.dir=%s']\n"
             "try:\n    runpy.run_module('stilts_lab', run_name='__main__')\n"
             "except SystemExit as e:\n"
             "    print('exit', e.code, sorted(m for m in ('torch', 'lightning', 'transformers') if m in sys.modules))\n"
             ) % (tmp_path / "run")
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "STILTS_DATA_DIR": str(data_dir),
           "STILTS_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "exit 1 []" in r.stdout, r.stdout + r.stderr[-2000:]
    assert "error: seed=-1 is impossible" in r.stderr
    assert_nothing_finished(tmp_path / "run", tmp_path / "cache")


@pytest.mark.slow
def test_error_in_some_trials_fails_those_trials_only(tmp_path, data_dir):
    """A sweep where one trial's setting is impossible: that trial fails, the other runs to the end,
    and the sweep exits 1 saying how many failed and where their errors are. The other trial asks
    for more training examples than the (20-row) file holds: a warning, and the real size recorded."""
    root = data_root(tmp_path, data_dir, edited("rte/train.tsv", data_dir, lambda ls: ls[:21]))
    r = cli(["target.train_size=500,0"], data_root_dir=root, tmp_path=tmp_path, sweep=True)
    assert r.returncode == 1, r.stderr[-3000:]
    trials = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/metrics.json")}
    assert trials["0"]["status"] in ("ok", "diverged") and trials["1"]["status"] == "failed"
    assert trials["0"]["split"]["train_examples"] == 20
    assert "train_size=500 asks for more than the 20 train examples" in r.stdout + r.stderr
    assert "error: 1 of the 2 trials this command ran failed" in r.stderr
    assert f"{tmp_path / 'sweep' / '1' / 'metrics.json'}: ConfigError: target.train_size=0 is impossible" in r.stderr
    assert "Traceback" not in r.stderr


# -- damaged caches: a warning and a correct run


@pytest.mark.slow
def test_damaged_caches_are_rebuilt_not_trusted(tmp_path, data_dir, caplog):
    """A truncated intermediate checkpoint, a diverged or unreadable stage record, a damaged
    tokenization cache and a half-written metrics.json in the folder being resumed: each is noticed,
    rebuilt or run again, and the run ends as an undamaged one does."""
    from stilts_lab.checkpoints import checkpoint_problem

    cache, out = tmp_path / "cache", tmp_path / "out"
    overrides = FAST + COPA_INTERMEDIATE
    first = run(compose_config(overrides, data_dir=data_dir, cache_dir=cache, output_dir=out))
    ckpt = Path(first["intermediate_checkpoint"]["path"])
    stage_file, weights = ckpt / "stage_metrics.json", ckpt / "model.safetensors"
    assert checkpoint_problem(ckpt) is None
    good = stage_file.read_text()
    stage_file.write_text(json.dumps(json.loads(good) | {"diverged": True}))
    assert checkpoint_problem(ckpt) == "its stage diverged"
    stage_file.write_text("{not json")
    assert "unreadable" in checkpoint_problem(ckpt)
    stage_file.write_text(good)

    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        again = run(compose_config(overrides + ["resume=false"], data_dir=data_dir, cache_dir=cache, output_dir=out))
    assert f"intermediate checkpoint {ckpt} cannot be used ({weights} is missing or truncated" in caplog.text
    assert again["dev_metric_per_epoch"] == first["dev_metric_per_epoch"]
    assert checkpoint_problem(ckpt) is None

    tokenized = [p for p in (cache / "tokenized").rglob("*") if p.is_file()]
    assert tokenized
    for p in tokenized:
        p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 3)])
    (out / METRICS_FILE).write_text('{"status": "ok", "config_hash": ')  # a half-written file
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resumed = run(compose_config(overrides, data_dir=data_dir, cache_dir=cache, output_dir=out))
    assert f"{out / METRICS_FILE} is unreadable" in caplog.text
    assert resumed["dev_metric_per_epoch"] == first["dev_metric_per_epoch"]
    assert json.loads((out / METRICS_FILE).read_text())["status"] in ("ok", "diverged")
