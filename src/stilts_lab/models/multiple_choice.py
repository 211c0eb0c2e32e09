"""Multiple choice: each (context, choice) pair is scored by one shared head; softmax over choices."""
from transformers import AutoModelForMultipleChoice

from stilts_lab.models.stage_module import StageModule


class MultipleChoiceModule(StageModule):
    auto_cls = AutoModelForMultipleChoice
