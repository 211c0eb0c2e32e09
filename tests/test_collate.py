"""transformers' padding collators give exactly the tensors of the hand-written collator they
replaced, on real tokenized examples; pad_to_multiple_of rounds widths up and changes nothing else.
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


def legacy_collate(examples, pad_token_id, regression=False):
    """The hand-written collator this project used before (batching.Collator), kept as the oracle."""
    multiple_choice = isinstance(examples[0]["input_ids"][0], list)
    seqs = [c for ex in examples for c in ex["input_ids"]] if multiple_choice else [ex["input_ids"] for ex in examples]
    width = max(len(s) for s in seqs)
    batch = {"input_ids": torch.full((len(seqs), width), pad_token_id, dtype=torch.long),
             "attention_mask": torch.zeros((len(seqs), width), dtype=torch.long)}
    for i, s in enumerate(seqs):
        batch["input_ids"][i, :len(s)] = torch.tensor(s)
        batch["attention_mask"][i, :len(s)] = 1
    if "token_type_ids" in examples[0]:
        types = [c for ex in examples for c in ex["token_type_ids"]] if multiple_choice else [ex["token_type_ids"] for ex in examples]
        batch["token_type_ids"] = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, t in enumerate(types):
            batch["token_type_ids"][i, :len(t)] = torch.tensor(t)
    if multiple_choice:
        n = len(examples[0]["input_ids"])
        batch = {k: v.view(len(examples), n, width) for k, v in batch.items()}
    batch["labels"] = torch.tensor([ex["label"] for ex in examples], dtype=torch.float if regression else torch.long)
    return batch


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


@pytest.mark.parametrize("task_name", ["rte", "stsb", "hellaswag"])
def test_library_collators_match_the_hand_written_one(task_name, tokenizer, data_dir):
    task, _, ds = encoded(task_name, tokenizer, data_dir)
    lengths = list(ds[LENGTH])
    ds = ds.remove_columns(LENGTH)
    collate = collator(tokenizer, task["kind"])
    collate8 = collator(tokenizer, task["kind"], pad_to_multiple_of=8)
    batches = list(LengthGroupedBatchSampler(lengths, 16, shuffle=True, seed=3))
    widths = set()
    for idx in batches:
        rows = ds[idx]
        examples = [{k: rows[k][i] for k in rows} for i in range(len(idx))]
        want = legacy_collate(examples, tokenizer.pad_token_id, regression=task["kind"] == "regression")
        got = collate(examples)
        assert set(got) == set(want)
        for key in want:
            assert got[key].dtype == want[key].dtype, key
            assert torch.equal(got[key], want[key]), (task_name, key)
        padded = collate8(examples)
        width = want["input_ids"].shape[-1]
        widths.add(width)
        assert padded["input_ids"].shape[-1] % 8 == 0 and padded["input_ids"].shape[-1] - width < 8
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(padded[key][..., :width], want[key])
        assert (padded["attention_mask"][..., width:] == 0).all()
        assert (padded["input_ids"][..., width:] == tokenizer.pad_token_id).all()
        assert torch.equal(padded["labels"], want["labels"])
    assert len(widths) > 1  # dynamic padding: batches differ in width


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
