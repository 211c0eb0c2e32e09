"""stilts_lab: intermediate-task fine-tuning experiments. From Python: stilts_lab.run(overrides) runs
one trial, stilts_lab.load_results(dir) reads a sweep (api.py); both import the heavy libraries only
when called."""
from stilts_lab.api import load_results, run
from stilts_lab.devices import register_resolvers

register_resolvers()  # ${cpu_precision:} in conf/trainer/cpu.yaml: resolved wherever a config is composed

__all__ = ["load_results", "run"]
