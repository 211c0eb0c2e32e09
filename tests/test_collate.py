"""transformers' padding collators, on real tokenized examples: each row is its example's ids padded
to the batch's longest sequence (rounded up by pad_to_multiple_of), with the matching mask and labels.
The Arrow tokenization cache holds what the tokenizer returns, and a ragged multiple-choice set
stops with an error instead of shifting choices between examples."""
import pytest
import torch
from omegaconf import OmegaConf

from stilts_lab.data.batching import LengthGroupedBatchSampler, collator
from stilts_lab.data.tasks import load_task, shuffle_choices
from stilts_lab.data.tokenize import LENGTH, encode_cached
from stilts_lab.errors import DataError
from stilts_lab.models.encoder import load_tokenizer, resolve_tokenizer
from tests.conftest import compose_config

N = 96  # examples per task: several batches of mixed lengths, seconds to tokenize


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_tokenizer(compose_config([]).model))


def encoded(task_name, tokenizer, data_dir, cache_dir=None):
    task = OmegaConf.to_container(compose_config([f"target={task_name}"]).target, resolve=True)
    examples = load_task(task, data_dir=str(data_dir), split_seed=0).train.examples[:N]
    if task["kind"] == "multiple_choice":
        examples = shuffle_choices(examples, 0)
    ds = encode_cached(examples, tokenizer, kind=task["kind"], max_length=task["max_length"],
                       key=f"test-collate-{task_name}", cache_dir=cache_dir)
    return task, examples, ds


def _sequences(example: dict, key: str) -> list[list[int]]:
    """A tokenized example's sequences: one for a pair, one per choice for multiple choice."""
    value = example[key]
    return value if isinstance(value[0], list) else [value]


@pytest.mark.parametrize("task_name", ["rte", "stsb", "hellaswag"])
def test_collated_batches_hold_each_example_padded_to_the_batch(task_name, tokenizer, data_dir):
    """Each row of a batch is its example's own ids, then padding to the batch's longest sequence
    (rounded up to pad_to_multiple_of when asked); the mask is 1 exactly over the ids; labels keep
    their kind's dtype; multiple choice comes out as (batch, choices, width)."""
    task, _, ds = encoded(task_name, tokenizer, data_dir)
    lengths = list(ds[LENGTH])
    ds = ds.remove_columns(LENGTH)
    widths = set()
    for multiple in (None, 8):
        collate = collator(tokenizer, task["kind"], pad_to_multiple_of=multiple)
        for idx in LengthGroupedBatchSampler(lengths, 16, shuffle=True, seed=3):
            rows = ds[idx]
            examples = [{k: rows[k][i] for k in rows} for i in range(len(idx))]
            batch = collate(examples)
            assert type(batch) is dict  # a plain dict: Lightning copies its tensors non-blocking
            longest = max(len(s) for ex in examples for s in _sequences(ex, "input_ids"))
            width = batch["input_ids"].shape[-1]
            assert width == (longest if multiple is None else -(-longest // multiple) * multiple)
            widths.add(width)
            n_seq = len(_sequences(examples[0], "input_ids"))
            assert batch["input_ids"].shape == ((len(idx), n_seq, width) if n_seq > 1 else (len(idx), width))
            ids = batch["input_ids"].view(len(idx), n_seq, width)
            mask = batch["attention_mask"].view(len(idx), n_seq, width)
            types = batch["token_type_ids"].view(len(idx), n_seq, width)
            for i, ex in enumerate(examples):
                for j, (seq, seq_types) in enumerate(zip(_sequences(ex, "input_ids"), _sequences(ex, "token_type_ids"))):
                    n = len(seq)
                    assert ids[i, j, :n].tolist() == seq and (ids[i, j, n:] == tokenizer.pad_token_id).all()
                    assert mask[i, j].tolist() == [1] * n + [0] * (width - n)
                    assert types[i, j, :n].tolist() == seq_types
            labels = torch.tensor([ex["label"] for ex in examples])
            assert batch["labels"].dtype == (torch.float32 if task["kind"] == "regression" else torch.long)
            assert torch.equal(batch["labels"], labels.to(batch["labels"].dtype))
    assert len(widths) > 2  # dynamic padding: batches differ in width


def test_arrow_cache_holds_the_tokenizer_output(tokenizer, data_dir, tmp_path):
    task, examples, ds = encoded("hellaswag", tokenizer, data_dir, cache_dir=tmp_path)
    assert (tmp_path / "tokenized" / "test-collate-hellaswag" / "dataset_info.json").is_file()
    again = encode_cached(examples, tokenizer, kind="multiple_choice", max_length=task["max_length"],
                          key="test-collate-hellaswag", cache_dir=tmp_path)
    assert again.cache_files and again.cache_files[0]["filename"].startswith(str(tmp_path))  # memory-mapped
    for i in (0, 1, len(examples) - 1):
        ex = examples[i]
        want = tokenizer([c[0] for c in ex["choices"]], [c[1] for c in ex["choices"]], truncation=True,
                         max_length=task["max_length"])
        assert again[i]["input_ids"] == want["input_ids"]
        assert again[i]["token_type_ids"] == want["token_type_ids"]
        assert again[i]["label"] == ex["label"]
        assert again[i][LENGTH] == max(len(x) for x in want["input_ids"])


def test_a_ragged_multiple_choice_set_stops_instead_of_shifting(tokenizer):
    examples = [{"choices": [["a", "b"], ["a", "c"], ["a", "d"]], "label": 0},
                {"choices": [["e", "f"], ["e", "g"]], "label": 1},
                {"choices": [["h", "i"], ["h", "j"], ["h", "k"]], "label": 2}]
    with pytest.raises(DataError, match=r"dev.jsonl: example 2 has 2 choices where the first has 3"):
        encode_cached(examples, tokenizer, kind="multiple_choice", max_length=16, key="ragged", cache_dir=None,
                      origin="dev.jsonl")
