"""A thin wrapper around a `tokenizers.Tokenizer`: text <-> token ids, without special tokens by default."""

from pathlib import Path

import tokenizers


class Tokenizer:
    """encode(text) -> list[int] and decode(ids) -> str over a Hugging Face `tokenizers` backend."""

    def __init__(self, backend: tokenizers.Tokenizer, *, bos_token_id: int | None = None,
                 eos_token_id: int | None = None):
        # tokenizer.json files may ask for fixed-length padding/truncation (MiniLM pads to 128):
        # IE needs the text's own tokens, so both are switched off.
        backend.no_padding()
        backend.no_truncation()
        self.backend = backend
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id

    @classmethod
    def from_file(cls, path: str | Path, **special_ids) -> "Tokenizer":
        """From a `tokenizer.json`."""
        return cls(tokenizers.Tokenizer.from_file(str(path)), **special_ids)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str], *, add_special_tokens: bool = False) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)]

    def decode(self, ids, *, skip_special_tokens: bool = False) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
