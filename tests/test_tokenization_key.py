"""The tokenization cache key names the tokenizer's content, not the truncation or padding its last
call left behind: otherwise every call tokenizing with other settings would rebuild (and duplicate)
every cache entry."""
from stilts_lab.identity import tokenizer_identity
from stilts_lab.models.encoder import load_tokenizer, resolve_tokenizer
from tests.conftest import compose_config


def test_the_tokenizer_identity_ignores_the_last_calls_settings():
    tokenizer = load_tokenizer(resolve_tokenizer(compose_config([]).model))
    before = tokenizer_identity(tokenizer)
    tokenizer(["a premise"], ["a hypothesis"], truncation=True, max_length=8)
    after_truncation = tokenizer_identity(tokenizer)
    tokenizer(["a premise"], ["a hypothesis"], truncation="only_second", max_length=64, padding="max_length")
    after_padding = tokenizer_identity(tokenizer)
    tokenizer(["a premise"])
    assert before == after_truncation == after_padding == tokenizer_identity(tokenizer)


def test_the_fingerprint_tells_tokenizers_apart():
    tokenizer = load_tokenizer(resolve_tokenizer(compose_config([]).model))
    before = tokenizer_identity(tokenizer)
    tokenizer.add_tokens(["stiltsword"])  # another vocabulary: other ids for the same text
    assert tokenizer_identity(tokenizer) != before
