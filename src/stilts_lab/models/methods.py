"""How a stage trains its encoder (the `intermediate/method` and `target/method` config groups):

- full (the default; its config adds nothing, so keys and hashes stay as they were): every weight trains;
  an intermediate checkpoint is the whole encoder (config.json + model.safetensors).
- lora: peft's LoRA on modules inside the encoder (per model family: target_modules[model_type]); an
  intermediate checkpoint is the adapter (adapter_config.json + adapter_model.safetensors, MBs).
- bitfit: only the encoder's bias terms train (a parameter filter, no library); an intermediate
  checkpoint is those bias tensors (BITFIT_FILE).

peft has no multiple-choice task type, so the method applies to the encoder only (model.base_model) and
the project's own heads train in full under every method. Only the encoder travels to the target stage:
a lora or bitfit checkpoint names the base encoder it applies to (HANDOFF_FILE); the target stage loads
that base, applies the checkpoint (a LoRA adapter merged with merge_and_unload), makes every weight
trainable again, and only then applies its own method."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from stilts_lab.errors import ConfigError

METHODS = ("full", "lora", "bitfit")
# In a lora / bitfit checkpoint: {"method": {...}, "base_encoder": {name, pretrained, hub_id}}: the model
# config's own spec (e.g. embedded:<package>/<folder>), resolved where the checkpoint is read, so that a
# cache stays usable after the venv moves. Checkpoints before 2026-12-07 hold a path string there.
HANDOFF_FILE = "method.json"
BITFIT_FILE = "bitfit_bias.safetensors"  # a bitfit checkpoint's encoder bias tensors
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # peft's names


def method_name(method: Mapping | None) -> str:
    name = (method or {}).get("name") or "full"
    if name not in METHODS:
        raise ConfigError(f"stage method {name!r} is unknown; known: {', '.join(METHODS)}")
    return name


def lora_targets(method: Mapping, model_type: str) -> list[str]:
    targets = method.get("target_modules")
    if isinstance(targets, Mapping):
        targets = targets.get(model_type)
    if not targets:
        raise ConfigError(f"lora: no target_modules for model family {model_type!r}: add "
                          f"`{model_type}: [query, value]` (its module names) to target_modules in "
                          "conf/task/method/lora.yaml, or set intermediate.method.target_modules=[...]")
    return [str(t) for t in targets]


def _head_params(model) -> list[torch.nn.Parameter]:
    prefix = model.base_model_prefix + "."
    return [p for n, p in model.named_parameters() if not n.startswith(prefix)]


@dataclass
class AppliedMethod:
    """A stage's method as applied to its model: what it saves and how many weights train."""
    name: str
    settings: dict
    peft_model: Any = None   # lora: the PeftModel wrapping model.base_model (LoRA injected in place)

    def save(self, model, folder: Path, base_encoder: Mapping) -> None:
        """The encoder's part of the stage into `folder`: the whole encoder (full), the adapter (lora)
        or the bias tensors (bitfit), the last two with HANDOFF_FILE naming the base they apply to."""
        encoder = model.base_model
        folder.mkdir(parents=True, exist_ok=True)
        if self.name == "full":
            encoder.save_pretrained(folder)
            return
        if self.name == "lora":
            self.peft_model.save_pretrained(folder)
            (folder / "README.md").unlink(missing_ok=True)  # peft's model card template: not needed
        else:
            from safetensors.torch import save_file
            save_file({n: p.detach().contiguous().cpu() for n, p in encoder.named_parameters() if n.endswith("bias")},
                      str(folder / BITFIT_FILE))
        (folder / HANDOFF_FILE).write_text(json.dumps({"method": self.settings, "base_encoder": dict(base_encoder)},
                                                      indent=1, sort_keys=True))


def base_reference(model_cfg: Mapping) -> dict:
    """What a lora / bitfit checkpoint records of its base encoder: the model config's spec, not a path."""
    return {k: model_cfg.get(k) for k in ("name", "pretrained", "hub_id")}


def base_source(handoff: Mapping) -> str:
    """Where the base encoder of a lora / bitfit checkpoint loads from on this machine."""
    base = handoff["base_encoder"]
    if isinstance(base, str):  # an older checkpoint: the absolute path it was trained with
        return base
    from stilts_lab.models.encoder import resolve_pretrained
    return resolve_pretrained(base)


def parameter_counts(model) -> dict[str, int]:
    return {"trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total_parameters": sum(p.numel() for p in model.parameters())}


def apply_method(model, method: Mapping | None) -> AppliedMethod:
    """Apply a stage's method to the encoder of `model` (in place); the head stays fully trainable."""
    name = method_name(method)
    settings = dict(method or {"name": "full"})
    encoder = model.base_model
    applied = AppliedMethod(name, settings)
    if name == "bitfit":
        for n, p in encoder.named_parameters():
            p.requires_grad_(n.endswith("bias"))
    elif name == "lora":
        from peft import LoraConfig, get_peft_model
        config = LoraConfig(r=int(settings["rank"]), lora_alpha=float(settings["alpha"]),
                            lora_dropout=float(settings["dropout"]), bias="none",
                            target_modules=lora_targets(settings, encoder.config.model_type))
        # injects the LoRA layers into `encoder` itself (model.base_model stays the same object) and
        # freezes every other encoder weight
        applied.peft_model = get_peft_model(encoder, config)
    for p in _head_params(model):
        p.requires_grad_(True)
    return applied


def read_handoff(source: str) -> dict | None:
    """What a lora / bitfit intermediate checkpoint at `source` says (None: a full checkpoint, or a
    pretrained encoder)."""
    path = Path(source) / HANDOFF_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def apply_handoff(model, source: str, handoff: Mapping) -> None:
    """Put an intermediate stage's lora adapter (merged: merge_and_unload) or bitfit biases on the base
    encoder of `model` (a head model), in place, and leave every weight trainable for the target stage's
    own method."""
    setattr(model, model.base_model_prefix, handed_off(model.base_model, source, handoff))
    for p in model.parameters():
        p.requires_grad_(True)


def handed_off(encoder, source: str, handoff: Mapping):
    """The base `encoder` with the lora / bitfit checkpoint at `source` applied (the same module, changed)."""
    name = method_name(handoff["method"])
    if name == "lora":
        from peft import PeftModel
        # peft freezes the base weights it wraps: the callers make them trainable again
        return PeftModel.from_pretrained(encoder, source).merge_and_unload()
    if name == "bitfit":
        from safetensors.torch import load_file
        biases = load_file(str(Path(source) / BITFIT_FILE))
        missing = {n for n, _ in encoder.named_parameters() if n.endswith("bias")} - set(biases)
        unexpected = set(biases) - set(dict(encoder.named_parameters()))
        if missing or unexpected:
            raise ConfigError(f"bitfit checkpoint {source} does not fit the base encoder "
                              f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
        encoder.load_state_dict(biases, strict=False)
    return encoder


def load_encoder(source: str):
    """The bare encoder (AutoModel) an intermediate checkpoint of any method stands for, or a pretrained
    one: for readers of checkpoints other than the target stage (transfer estimates, notebooks)."""
    from transformers import AutoModel
    handoff = read_handoff(source)
    if handoff is None:
        return AutoModel.from_pretrained(source)
    return handed_off(AutoModel.from_pretrained(base_source(handoff)), source, handoff)
