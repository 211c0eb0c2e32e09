"""Parallel jobs that need the same tokenization cache entry all read one complete copy: four
processes start encode_cached on one key at the same moment, round after round, and each gets
the dataset an in-memory build gives, with no error (no entry removed or replaced under a reader)."""
import hashlib
import json
import multiprocessing
import traceback

import pytest

from stilts_lab.data.tokenize import encode_cached

WORKERS, ROUNDS = 4, 6
EXAMPLES = [{"segments": [f"premise number {i} says {'yes ' * (i % 5)}", f"hypothesis {i}"], "label": i % 2}
            for i in range(24)]
_worker = {}


def _start(barrier):
    from stilts_lab.models.encoder import load_tokenizer, resolve_tokenizer
    from tests.conftest import compose_config

    _worker["tokenizer"] = load_tokenizer(resolve_tokenizer(compose_config([]).model))
    _worker["barrier"] = barrier


def digest(ds) -> str:
    return hashlib.sha256(json.dumps(ds.to_dict(), sort_keys=True).encode()).hexdigest()


def _encode(cache_dir: str) -> str:
    try:
        _worker["barrier"].wait(timeout=120)  # all four look for the entry at once
        ds = encode_cached(EXAMPLES, _worker["tokenizer"], kind="classification", max_length=32,
                           key="race-rte-train", cache_dir=cache_dir)
        return digest(ds)
    except Exception:
        return "error: " + traceback.format_exc()


def test_parallel_jobs_build_one_entry_and_all_read_it(tmp_path):
    from stilts_lab.models.encoder import load_tokenizer, resolve_tokenizer
    from tests.conftest import compose_config

    tokenizer = load_tokenizer(resolve_tokenizer(compose_config([]).model))
    want = digest(encode_cached(EXAMPLES, tokenizer, kind="classification", max_length=32,
                                key="race-rte-train", cache_dir=None))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    with ctx.Pool(WORKERS, initializer=_start, initargs=(barrier,)) as pool:
        for r in range(ROUNDS):
            cache = tmp_path / f"round-{r}"  # a fresh cache: every round races to build the entry
            got = pool.map(_encode, [str(cache)] * WORKERS, chunksize=1)
            errors = [g for g in got if g.startswith("error: ")]
            assert not errors, f"round {r}: {len(errors)} of {WORKERS} jobs failed:\n{errors[0]}"
            assert got == [want] * WORKERS, f"round {r}: a job read a dataset other than the one built"
            left = sorted(p.name for p in (cache / "tokenized").iterdir() if p.name.startswith("."))
            assert not left, f"round {r}: temp folders left behind: {left}"


@pytest.mark.parametrize("damage", ["truncated", "wrong_rows"])
def test_an_unusable_entry_is_replaced(tmp_path, damage):
    from stilts_lab.models.encoder import load_tokenizer, resolve_tokenizer
    from tests.conftest import compose_config

    tokenizer = load_tokenizer(resolve_tokenizer(compose_config([]).model))
    args = dict(kind="classification", max_length=32, key="race-rte-train", cache_dir=tmp_path)
    want = digest(encode_cached(EXAMPLES, tokenizer, **args))
    entry = tmp_path / "tokenized" / "race-rte-train"
    if damage == "truncated":
        arrow = next(entry.glob("*.arrow"))
        arrow.write_bytes(arrow.read_bytes()[:100])
    else:  # an entry of another size under this key
        encode_cached(EXAMPLES[:5], tokenizer, **args)
    assert digest(encode_cached(EXAMPLES, tokenizer, **args)) == want
    assert sorted(p.name for p in entry.parent.iterdir()) == ["race-rte-train", "race-rte-train.lock"]
