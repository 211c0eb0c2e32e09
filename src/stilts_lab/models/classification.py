"""Sequence classification and regression (one linear head on the encoder's pooled output)."""
from transformers import AutoModelForSequenceClassification

from stilts_lab.models.stage_module import StageModule


class SequenceClassificationModule(StageModule):
    auto_cls = AutoModelForSequenceClassification

    def predictions(self, logits):
        # regression heads have one output: the score itself
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(-1)
