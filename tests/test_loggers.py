"""The logger config group, offline trackers for real: one two-stage trial through the CLI with
logger=[tensorboard,mlflow] writes both stages under the trial folder, with the dev metric that
metrics.json holds and the metrics.json path; its console output has each log message once."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stilts_lab.errors import ConfigError
from stilts_lab.trackers import build_logger
from tests.conftest import REPO, compose_config

TINY = ["target.train_size=16", "target.eval_size=16", "trainer.max_epochs=1", "intermediate=cola",
        "intermediate.train_size=16", "intermediate.eval_size=16", "intermediate.max_epochs=1",
        "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def trial(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("trial")
    # a cache of its own, so the intermediate stage trains here (a reused checkpoint logs nothing)
    env = dict(os.environ, STILTS_DATA_DIR=str(data_dir), STILTS_CACHE_DIR=str(out / "cache"))
    r = subprocess.run([sys.executable, "-m", "stilts_lab", *TINY, "logger=[tensorboard,mlflow]",
                        f"hydra.run.dir={out / 'run'}"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "run", r.stdout + r.stderr


def tensorboard_scalars(folder: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder)).Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def mlflow_run(store: Path):
    from mlflow.tracking import MlflowClient
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 reads its file store only when opted in
    client = MlflowClient(tracking_uri=f"file:{store}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    return runs[0]


def test_both_stages_log_to_offline_trackers_under_the_trial(trial):
    run_dir, _ = trial
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stage = json.loads((Path(metrics["intermediate_checkpoint"]["path"]) / "stage_metrics.json").read_text())
    stage_lr = metrics["config"]["intermediate"]["lr"]
    for name, result in (("target", metrics), ("intermediate", stage)):
        key, best = f"dev_{result['metric_name']}", result["best_dev_metric"]  # rte: accuracy, cola: mcc
        scalars = tensorboard_scalars(run_dir / "logs" / name / "tensorboard")
        assert scalars[key] == pytest.approx([best]), name  # one epoch: the one dev score
        assert "train_loss" in scalars or "train_loss_step" in scalars
        ml = mlflow_run(run_dir / "logs" / name / "mlflow")
        assert ml.info.run_name == name and ml.info.status == "FINISHED"
        assert ml.data.metrics[key] == pytest.approx(best)
        assert ml.data.params["metrics_file"] == str(run_dir / "metrics.json")
        hparams = yaml.safe_load((run_dir / "logs" / name / "tensorboard" / "hparams.yaml").read_text())
        assert hparams["metrics_file"] == str(run_dir / "metrics.json")
        # runs compare by what they ran: the task, where it started, rate, batch, seed, method
        assert hparams["task"] == ("rte" if name == "target" else "cola") and hparams["method"] == "full"
        assert hparams["lr"] == pytest.approx(metrics["hparams"]["lr"] if name == "target" else stage_lr)
        assert hparams["batch_size"] > 0 and "warmup_ratio" in hparams and "seed" in hparams
        assert ml.data.params["task"] == hparams["task"]
    assert yaml.safe_load((run_dir / "logs" / "target" / "tensorboard" / "hparams.yaml").read_text())["start"] == \
        Path(metrics["intermediate_checkpoint"]["path"]).name   # cola-<key>: the intermediate it started from
    assert not (run_dir / "logs" / "target" / "csv").exists()  # logger= replaced the default, not added to it


def test_each_log_message_is_printed_once(trial):
    _, output = trial
    lines = [line for line in output.splitlines() if "GPU available" in line]
    assert len(lines) == 2, lines  # one per stage, not one per handler
    assert "litlogger" not in output
    assert output.count("trial finished: cola -> rte, status ") == 1


def test_a_logger_that_cannot_be_built_names_its_key(tmp_path):
    cfg = compose_config(["logger=[csv,tensorboard]", "+logger.csv.no_such_argument=1"])
    with pytest.raises(ConfigError, match=r"logger\.csv: cannot create .*CSVLogger.*no_such_argument"):
        build_logger(cfg.logger, tmp_path / "target")
    assert [type(x).__name__ for x in build_logger(compose_config(["logger=[csv,tensorboard]"]).logger,
                                                    tmp_path / "target")] == ["CSVLogger", "TensorBoardLogger"]
