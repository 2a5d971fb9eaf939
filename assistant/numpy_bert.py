"""The packaged model's forward pass in numpy, for questions: `NumpyBert`, `NumpyEmbedder`.

Importing sentence-transformers takes 8-10 s on a 2-core machine (torch, then
transformers, which pulls in torch.distributed, dynamo, sympy and scipy), so a
command that answers one question spent most of its start there. A question
needs none of it: the packaged multilingual-e5-small is a 12-layer BERT encoder
with mean pooling and L2 normalisation, which numpy computes from the same
sentence-transformers folder (`model.safetensors`, `tokenizer.json`) in about
2 s from process start. The vectors are those of sentence-transformers to
within 1e-6 (a test compares them), so questions embedded here meet passages
embedded there. Indexing still embeds with sentence-transformers.

Only what the packaged folder holds is supported: `BertModel` with absolute
positions and exact GELU, then mean pooling and normalisation. `NumpyBert.load`
refuses anything else with a one-line error. The math follows
`transformers.BertModel` in float32: token, position and type embeddings, layer
norm; per layer self-attention with padded keys masked, residual and layer
norm, a GELU feed-forward block, residual and layer norm. GELU's erf is the
Abramowitz-Stegun 7.1.26 approximation (absolute error below 5e-7). Texts are
truncated to 512 tokens, as sentence-transformers does, and packed without
padding.

`NumpyEmbedder` runs `onnx_bert.OnnxBert` instead (the same encoder in ONNX Runtime, about
twice as fast; it reuses this module's folder check, weight reading and embedding stage)
when `onnxruntime` and `onnx` import, and this forward pass when they do not.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from .embedding import LazyEmbedder
from .errors import AssistantError

log = logging.getLogger(__name__)

__all__ = ["NumpyBert", "NumpyEmbedder", "supports", "open_folder", "prepare_tokenizer", "read_layers", "Layer",
           "Embeddings"]

MAX_TOKENS = 512
T = TypeVar("T")
_MODULES = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Normalize"]


@dataclass(frozen=True)
class Layer:
    qkv: np.ndarray  # (hidden, 3 * hidden): query, key and value projections side by side
    qkv_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


def supports(folder: Path) -> str | None:
    """None when `folder` is a model `NumpyBert` computes; otherwise why not."""
    try:
        modules = [m.get("type") for m in json.loads((folder / "modules.json").read_text(encoding="utf-8"))]
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, AttributeError) as exc:
        return f"cannot read the model folder's configuration: {exc}"
    if modules != _MODULES:
        return f"modules {modules} are not Transformer, mean Pooling, Normalize"
    if not pooling.get("pooling_mode_mean_tokens") or any(
            pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                     "pooling_mode_mean_sqrt_len_tokens")):
        return "pooling is not plain mean pooling"
    if (config.get("model_type") != "bert" or config.get("hidden_act") != "gelu"
            or config.get("position_embedding_type", "absolute") != "absolute"):
        return "the encoder is not a BERT model with GELU and absolute positions"
    if not (folder / "model.safetensors").is_file() or not (folder / "tokenizer.json").is_file():
        return "model.safetensors or tokenizer.json is missing"
    return None


def open_folder(folder: Path, engine: str,
                build: Callable[[Any, dict[str, Any], dict[str, np.ndarray], int], T]) -> T:
    """`build(tokenizer, config, weights, max_tokens)` over a folder that `supports` accepts;
    every failure is a one-line `AssistantError` ("cannot compute FOLDER {engine}: why", "cannot load")."""
    why = supports(folder)
    if why is not None:
        raise AssistantError(f"cannot compute {folder} {engine}: {why}")
    try:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer
    except ImportError as exc:  # both come with sentence-transformers
        raise AssistantError(f"cannot import {exc.name}: pip install safetensors tokenizers") from None
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        settings = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        weights = load_file(str(folder / "model.safetensors"))
        return build(tokenizer, config, weights, int(settings.get("max_seq_length", MAX_TOKENS)))
    except AssistantError:
        raise
    except Exception as exc:  # damaged files come in many error types
        raise AssistantError(f"cannot load {folder}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None


def prepare_tokenizer(tokenizer: Any, config: dict[str, Any], max_tokens: int) -> int:
    """Set `tokenizer` to truncate as sentence-transformers does, without padding; the token limit."""
    limit = min(max_tokens, int(config["max_position_embeddings"]))
    tokenizer.no_padding()
    tokenizer.enable_truncation(limit)
    return limit


def stored(weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The weight `name` as stored; a one-line error when the file lacks it."""
    if name not in weights:
        raise AssistantError(f"the model's weights have no {name}")
    return weights[name]


def f32(weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    return np.ascontiguousarray(stored(weights, name), dtype=np.float32)


def read_layers(config: dict[str, Any], weights: dict[str, np.ndarray]) -> list[Layer]:
    """The encoder layers' weights in float32, matrices transposed to (in, out)."""
    layers = []
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}."

        def w(name: str) -> np.ndarray:
            return f32(weights, p + name)

        parts = ("query", "key", "value")
        layers.append(Layer(
            qkv=np.ascontiguousarray(np.concatenate([w(f"attention.self.{n}.weight") for n in parts]).T),
            qkv_bias=np.concatenate([w(f"attention.self.{n}.bias") for n in parts]),
            out=np.ascontiguousarray(w("attention.output.dense.weight").T),
            out_bias=w("attention.output.dense.bias"),
            norm1=(w("attention.output.LayerNorm.weight"), w("attention.output.LayerNorm.bias")),
            up=np.ascontiguousarray(w("intermediate.dense.weight").T),
            up_bias=w("intermediate.dense.bias"),
            down=np.ascontiguousarray(w("output.dense.weight").T),
            down_bias=w("output.dense.bias"),
            norm2=(w("output.LayerNorm.weight"), w("output.LayerNorm.bias")),
        ))
    return layers


class Embeddings:
    """The embedding stage: token, position and type embeddings summed, then layer norm.

    The token table stays as stored (float16 for the packaged model): a lookup reads a few
    rows, cast to float32 then, as sentence-transformers' loader does. `OnnxBert` uses this too.
    """

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
        self.eps = np.float32(config.get("layer_norm_eps", 1e-12))
        self.tokens = stored(weights, "embeddings.word_embeddings.weight")
        self.positions = f32(weights, "embeddings.position_embeddings.weight")
        self.token_type = f32(weights, "embeddings.token_type_embeddings.weight")[0]
        self.norm = (f32(weights, "embeddings.LayerNorm.weight"), f32(weights, "embeddings.LayerNorm.bias"))

    def __call__(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(tokens, hidden) float32 rows for token `ids` at `positions`."""
        x = self.tokens[ids].astype(np.float32)
        x += self.positions[positions]
        x += self.token_type
        return layer_norm(x, self.norm, self.eps)


class NumpyBert:
    """A sentence-transformers BERT folder computed in numpy; `encode(texts)` gives normalised vectors."""

    def __init__(self, tokenizer: Any, config: dict[str, Any], weights: dict[str, np.ndarray],
                 max_tokens: int = MAX_TOKENS) -> None:
        self.tokenizer = tokenizer
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = np.float32(config.get("layer_norm_eps", 1e-12))
        self.max_tokens = prepare_tokenizer(tokenizer, config, max_tokens)
        self.embeddings = Embeddings(config, weights)
        self.layers = read_layers(config, weights)

    @classmethod
    def load(cls, folder: Path) -> "NumpyBert":
        """Read a sentence-transformers folder that `supports` accepts."""
        return open_folder(Path(folder), "in numpy", cls)

    @property
    def dimension(self) -> int:
        return self.hidden

    def encode(self, texts: Sequence[str], max_batch_tokens: int = 4096) -> np.ndarray:
        """L2-normalised float32 vectors of `texts`, in their order."""
        if not texts:
            return np.zeros((0, self.hidden), dtype=np.float32)
        ids = [e.ids for e in self.tokenizer.encode_batch([str(t) for t in texts])]
        out = np.empty((len(ids), self.hidden), dtype=np.float32)
        start, tokens = 0, 0
        for i, seq in enumerate(ids):
            if tokens and tokens + len(seq) > max_batch_tokens:
                out[start:i] = self._forward(ids[start:i])
                start, tokens = i, 0
            tokens += len(seq)
        out[start:] = self._forward(ids[start:])
        return out

    def _forward(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """The texts' tokens packed one after another, without padding: the dense layers see one
        (tokens, hidden) matrix, and attention runs per text over its own tokens only."""
        lengths = np.array([len(seq) for seq in batch])
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        h, heads = self.hidden, self.heads
        size = h // heads
        ids = np.concatenate([np.asarray(seq, dtype=np.int64) for seq in batch])
        positions = np.concatenate([np.arange(n) for n in lengths])
        x = self.embeddings(ids, positions)
        scale = np.float32(1.0 / math.sqrt(size))
        attended = np.empty_like(x)
        for layer in self.layers:
            qkv = x @ layer.qkv
            qkv += layer.qkv_bias
            for a, b in zip(bounds[:-1], bounds[1:]):
                part = qkv[a:b].reshape(b - a, 3, heads, size)
                q = np.ascontiguousarray(part[:, 0].transpose(1, 0, 2))
                k = np.ascontiguousarray(part[:, 1].transpose(1, 2, 0))
                v = np.ascontiguousarray(part[:, 2].transpose(1, 0, 2))
                scores = np.matmul(q, k)
                scores *= scale
                scores -= scores.max(axis=-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(axis=-1, keepdims=True)
                attended[a:b] = np.matmul(scores, v).transpose(1, 0, 2).reshape(b - a, h)
            y = attended @ layer.out
            y += layer.out_bias
            y += x
            x = layer_norm(y, layer.norm1, self.eps)
            up = x @ layer.up
            up += layer.up_bias
            y = _gelu(up) @ layer.down
            y += layer.down_bias
            y += x
            x = layer_norm(y, layer.norm2, self.eps)
        pooled = np.add.reduceat(x, bounds[:-1], axis=0) / lengths[:, None].astype(np.float32)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))


def layer_norm(x: np.ndarray, norm: tuple[np.ndarray, np.ndarray], eps: np.float32) -> np.ndarray:
    """Layer norm of each row, in place (every caller passes a fresh array)."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x)[:, None] / np.float32(x.shape[-1])
    x /= np.sqrt(var + eps)
    x *= norm[0]
    x += norm[1]
    return x


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x * (1 + erf(x / sqrt 2)) / 2, in place, with erf to within 5e-7
    (Abramowitz-Stegun 7.1.26: erf(z) = 1 - p(t) exp(-z^2), t = 1 / (1 + 0.3275911 z), z >= 0)."""
    z = np.abs(x)
    z *= np.float32(1.0 / math.sqrt(2.0))
    t = z * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    p = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        p += np.float32(c)
        p *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    z *= p  # 1 - erf(|x| / sqrt 2)
    np.subtract(np.float32(2.0), z, out=z, where=x >= 0)  # 1 + erf(x / sqrt 2)
    x *= z
    x *= np.float32(0.5)
    return x


class NumpyEmbedder(LazyEmbedder):
    """An `Embedder` over the fast question engine, loaded on first use from the folder `locate()` returns:
    `onnx_bert.OnnxBert` (ONNX Runtime, about twice as fast) when `onnxruntime` and `onnx` import,
    else `NumpyBert`. Both give sentence-transformers' vectors.

    Carries the identity of the sentence-transformers embedder it stands in for, so an
    index stamped by one opens with the other. `threads` is ONNX Runtime's intra-op thread
    count (0 or None: its default; numpy's BLAS has its own, OPENBLAS_NUM_THREADS).
    Thread-safe: the forward pass keeps no state.
    """

    def __init__(self, locate: Callable[[], Path], *, model_id: str, fingerprint: str,
                 threads: int | None = None) -> None:
        super().__init__(model_id, fingerprint)
        self._locate = locate
        self.threads = threads

    @property
    def dimension(self) -> int:
        return int(self._loaded().dimension)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        return np.asarray(self._loaded().encode(list(texts)), dtype=np.float32)

    def _load(self) -> Any:
        from .onnx_bert import OnnxBert, onnx_missing

        started = time.monotonic()
        folder = self._locate()
        why = onnx_missing()
        if why is None:
            model: Any = OnnxBert.load(folder, threads=self.threads)
            engine = f"ONNX Runtime, {model.threads or 'default'} threads"
        else:
            log.info("questions are embedded in numpy, not ONNX Runtime: %s", why)
            model, engine = NumpyBert.load(folder), "numpy"
        log.info("loaded %s for questions (%s) in %.1f s", self._model_id, engine, time.monotonic() - started)
        return model
