"""Text: vocabularies, loading through Hugging Face ``datasets``, padding and windows.

    text = load_text("corpus.txt")              # a file, a folder of .txt files, or a Hub dataset name
    vocab = CharVocab.build(text)               # or WordVocab.build(text, min_freq=2)
    ids = vocab.encode(text)                    # np.int32 [N]
    batch = random_windows(ids, 64, 100, (seed, step))  # {"inputs": [64, 100], "targets": [64, 100]}

Token ids are checked on the host against the vocabulary size before they
reach a model: JAX gathers clamp out-of-range ids silently.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
from typing import NamedTuple

import numpy as np

from rnnlab.data.files import check_text_files, class_labels, column_values, load_table, looks_local, text_cells
from rnnlab.validation import InputError, check_token_ids

PAD, UNK = "<pad>", "<unk>"


@dataclasses.dataclass(frozen=True)
class CharVocab:
    """Characters (Unicode code points) seen in the training text, line breaks included.

    ``specials`` (e.g. ``("<pad>", "<s>", "</s>")`` for sequence-to-sequence) take
    the first ids; text never encodes to them, ``id(name)`` gives them.
    """

    tokens: tuple[str, ...]
    specials: tuple[str, ...] = ()

    @classmethod
    def build(cls, text: str, specials: tuple[str, ...] = ()) -> CharVocab:
        if not text:
            raise InputError("cannot build a vocabulary from empty text")
        return cls(tuple(specials) + tuple(sorted(set(text))), tuple(specials))

    def id(self, special: str) -> int:
        return self.specials.index(special)

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        """Character -> id (the specials are not characters and are left out)."""
        return {ch: i for i, ch in enumerate(self.tokens) if i >= len(self.specials)}

    def encode(self, text: str, skip_unknown: bool = False) -> np.ndarray:
        """Ids of ``text``; a character not in the vocabulary is an error, or dropped
        with ``skip_unknown`` (e.g. validation text with symbols training never saw)."""
        index = self.index
        if skip_unknown:
            text = "".join(ch for ch in text if ch in index)
        unknown = sorted(set(text) - index.keys())
        if unknown:
            raise InputError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        return np.fromiter((index[ch] for ch in text), np.int32, len(text))

    def decode(self, ids) -> str:
        """Text of the ids; special tokens are dropped."""
        ids = check_token_ids(ids, self.size).reshape(-1)
        return "".join(self.tokens[i] for i in ids if i >= len(self.specials))

    def to_dict(self) -> dict:
        return {"kind": "char", "tokens": list(self.tokens), "specials": list(self.specials)}


def split_words(text: str, lowercase: bool = False) -> list[str]:
    """Whitespace tokenisation (the seeds' ``text.split()``)."""
    return (text.lower() if lowercase else text).split()


@dataclasses.dataclass(frozen=True)
class WordVocab:
    """Words seen at least ``min_freq`` times; ``<pad>`` is id 0, ``<unk>`` id 1."""

    tokens: tuple[str, ...]
    lowercase: bool = False

    @classmethod
    def build(cls, text_or_texts, min_freq: int = 1, lowercase: bool = False, max_size: int | None = None):
        texts = [text_or_texts] if isinstance(text_or_texts, str) else list(text_or_texts)
        counts = collections.Counter(w for t in texts for w in split_words(t, lowercase))
        if not counts:
            raise InputError("cannot build a vocabulary from text with no words")
        # most frequent first, ties alphabetical: deterministic
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls((PAD, UNK) + tuple(words[:max_size]), lowercase)

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def word_to_index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.tokens)}

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def encode(self, text: str) -> np.ndarray:
        index = self.word_to_index
        return np.array([index.get(w, self.unk_id) for w in split_words(text, self.lowercase)], np.int32)

    def decode(self, ids) -> str:
        return " ".join(self.tokens[i] for i in check_token_ids(ids, self.size).reshape(-1))

    def to_dict(self) -> dict:
        return {"kind": "word", "tokens": list(self.tokens), "lowercase": self.lowercase}


def vocab_from_dict(d: dict):
    """Inverse of ``vocab.to_dict()`` (how checkpoints store vocabularies)."""
    if d.get("kind") == "char":
        return CharVocab(tuple(d["tokens"]), tuple(d.get("specials", ())))
    if d.get("kind") == "word":
        return WordVocab(tuple(d["tokens"]), bool(d.get("lowercase", False)))
    raise ValueError(f"not a vocabulary: {d!r:.80}")


# -- loading ------------------------------------------------------------------


def default_corpus() -> str:
    """English prose present on every Python installation: the standard library's
    help topics (``pydoc_data.topics``, about 460k characters), for offline demos."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def load_text(source: str | pathlib.Path, split: str = "train", column: str = "text") -> str:
    """All text of a local file, a folder of ``.txt`` files (sorted by name) or a
    Hugging Face dataset, loaded through ``datasets`` with line breaks kept.

    Local files must be UTF-8 and not all empty (an ``InputError`` names the file).
    """
    import datasets

    path = pathlib.Path(source)
    if path.is_file() or path.is_dir():
        files = [path] if path.is_file() else sorted(path.rglob("*.txt"))
        if not files:
            raise InputError(f"no .txt files under {path}")
        check_text_files(files, path)
        # The text loader strips line breaks unless told not to; a character model needs them.
        table = datasets.load_dataset("text", data_files=[str(f) for f in files], split=split, keep_linebreaks=True)
        return "".join(table["text"])
    if looks_local(source):
        raise FileNotFoundError(f"no such file or folder: {source}")
    table = datasets.load_dataset(str(source), split=split)  # a Hub name: needs the network
    return "\n".join(text_cells(column_values(table, column, source), column, source))


# -- batching -----------------------------------------------------------------


def pad_sequences(sequences, pad_id: int = 0, max_len: int | None = None):
    """Right-pad id sequences: ``(ids [B, T] int32, lengths [B] int32)``.

    Every sequence needs at least one token; longer ones are truncated to ``max_len``.
    """
    sequences = [_ids(s, f"sequence {i}")[:max_len] for i, s in enumerate(sequences)]
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("pad_sequences needs at least one sequence and no empty sequence")
    _ids([pad_id], "pad_id")
    lengths = np.array([len(s) for s in sequences], np.int32)
    ids = np.full((len(sequences), int(lengths.max()) if max_len is None else max_len), pad_id, np.int32)
    for row, s in zip(ids, sequences):
        row[: len(s)] = s
    return ids, lengths


def _ids(ids, what: str) -> np.ndarray:
    """Token ids as int32, refused (never cast) when they are not integers or lie outside int32:
    ``np.asarray(ids, np.int32)`` would truncate 2.7 to 2 and wrap 2**31 to -2**31."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return ids.astype(np.int32)
    if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"{what}: token ids must be integers, got dtype {ids.dtype}")
    info = np.iinfo(np.int32)
    if ids.min() < info.min or ids.max() > info.max:
        raise InputError(f"{what}: token ids must fit int32, got values in [{ids.min()}, {ids.max()}]")
    return ids.astype(np.int32)


def random_windows(ids: np.ndarray, batch_size: int, seq_len: int, seed, examples: slice = slice(None)) -> dict:
    """``batch_size`` random windows of a token stream: inputs and next-token targets ``[B, seq_len]``.

    A pure function of ``seed`` (anything ``np.random.default_rng`` takes): batch
    ``i`` of a run uses ``(run_seed, i)``, so the data position is the step.
    ``examples`` picks some of the batch's windows (a device's or a host's share)
    without reading the others.
    """
    if len(ids) < seq_len + 1:
        raise InputError(f"a text of {len(ids)} tokens is shorter than one window of {seq_len} + 1")
    starts = np.random.default_rng(seed).integers(0, len(ids) - seq_len, batch_size)[examples]
    chunks = ids[starts[:, None] + np.arange(seq_len + 1)[None, :]]
    return {"inputs": chunks[:, :-1], "targets": chunks[:, 1:]}


def sequential_windows(ids: np.ndarray, seq_len: int) -> dict:
    """Non-overlapping windows covering the stream once (for validation): ``[N, seq_len]``."""
    count = (len(ids) - 1) // seq_len
    if count < 1:
        raise InputError(f"a text of {len(ids)} tokens is shorter than one window of {seq_len} + 1")
    inputs = ids[: count * seq_len].reshape(count, seq_len)
    targets = ids[1 : count * seq_len + 1].reshape(count, seq_len)
    return {"inputs": inputs, "targets": targets}


class Labelled(NamedTuple):
    """Texts with class ids and the classes' names (id -> name)."""

    texts: list[str]
    labels: np.ndarray  # int32 [N]
    class_names: tuple[str, ...]


def load_labelled(
    source: str, split: str = "train", text_column: str = "text", label_column: str = "label", class_names=None
) -> Labelled:
    """Texts and labels from a local CSV/JSON/JSONL file or a Hugging Face dataset name
    (e.g. ``imdb``; ``sst2`` with ``text_column="sentence"``), through ``datasets``.

    Labels may be integers ``0..C-1`` or names (``pos``/``neg``: ids in sorted order,
    as ``datasets``' ``ClassLabel``); a Hub dataset's ``ClassLabel`` names are kept.
    Pass the training file's ``class_names`` when loading its test file.  An empty
    cell is an error naming its row and column.
    """
    import datasets

    path = pathlib.Path(source)
    if path.is_file():
        table = load_table(path)
    elif looks_local(source):
        raise FileNotFoundError(f"no such file: {source}")
    else:
        table = datasets.load_dataset(str(source), split=split)  # a Hub name: needs the network
    texts = text_cells(column_values(table, text_column, source), text_column, source)
    labels = column_values(table, label_column, source)
    feature = table.features[label_column]
    if class_names is None and isinstance(feature, datasets.ClassLabel):
        class_names = feature.names
    ids, names = class_labels(labels, label_column, source, class_names)
    return Labelled(texts, ids, names)


def load_pairs(path, source_column: str = "source", target_column: str = "target") -> list[tuple[str, str]]:
    """Translation pairs from a two-column CSV file, through ``datasets``; an empty cell is an
    error naming its row and column."""
    table = load_table(path)
    sources = text_cells(column_values(table, source_column, path), source_column, path)
    targets = text_cells(column_values(table, target_column, path), target_column, path)
    return list(zip(sources, targets))
