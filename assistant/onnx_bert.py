"""The packaged model's encoder in ONNX Runtime, for questions: `OnnxBert`.

A question's vector is on the path of every search, and `NumpyBert` spends about 35 ms on a
22-token question with two BLAS threads. ONNX Runtime runs the same float32 encoder in 17-20 ms.
Profiled, its matrix products (MLAS) are two thirds of that; its optimiser fuses the elementwise
work (residual + layer norm into SkipLayerNormalization, bias + GELU into BiasGelu, the score
scaling into the attention product). Attention itself stays unfused (ORT's CPU attention fusion
matches only older opsets); at 22 tokens Softmax and the transposes are under a tenth of the time.

The graph is built in memory from the folder's `model.safetensors` with the `onnx` helper
API (no torch, no export step, nothing written to disk), in the standard ops of a PyTorch
BERT export at opset 17: MatMul and Add, Reshape and Transpose into heads, MatMul, Div, an
additive mask, Softmax, exact GELU through Erf, LayerNormalization. The math is that of
`numpy_bert.NumpyBert`, which documents it; the vectors are sentence-transformers' to within
2e-7 (a test compares them). The weights stay float32: int8 dynamic quantisation ran in 9 ms
but moved vectors by up to 0.03 per dimension, and questions must meet passages that
sentence-transformers embedded.

The embedding lookup and its layer norm stay in numpy (`numpy_bert.Embeddings`), and the graph
takes hidden states and a mask: with the lookup in the graph a question took the same time
(19.8 against 20.0 ms p50), and the session held 278 MB of weights instead of 85 and opened
0.6 s slower. Mean pooling
and normalisation are numpy too. Texts are truncated to 512 tokens, as sentence-transformers
does; several texts are sorted by length and padded into batches with a mask.

Measured on the 2-core development machine, quiet, 20 questions of 17-30 tokens, each engine in
its own process, processes alternating (three runs; the range of their results): p50 / p95 per
question 42-45 / 52-54 ms (numpy, 1 thread), 34-36 / 42-44 (numpy, 2), 25-27 / 31-35 (ORT, 1),
17-20 / 21-27 (ORT, 2); an answer's 25 sentences in one call 0.64-0.70 s (numpy, 2) against
0.42-0.46 s (ORT, 2). `OnnxBert.load` takes 2.0-2.2 s against 1.7-1.9 s (importing onnx and
onnxruntime 0.3 s, building the graph 0.03 s, opening the session 0.2 s; the tokenizer's 1.0 s
is common to both), so a one-question command starts about 0.35 s later. Steady memory is
140 MB more (ORT's own and prepacked copies of the 85 MB of float32 weights).
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import AssistantError
from .numpy_bert import Embeddings, Layer, open_folder, prepare_tokenizer, read_layers

log = logging.getLogger(__name__)

__all__ = ["OnnxBert", "onnx_missing"]

OPSET = 17
IR_VERSION = 8  # the oldest that opset 17 allows: any onnxruntime >= 1.18 opens it
_MASKED = -10000.0  # added to the scores of padded keys: exp() of it is 0 in float32
# Idle worker threads sleep rather than spin. Spinning saved 2-3 ms a question on the quiet 2-core
# machine (p50 16-17 against 17-20 ms) but with another process busy on one core it took 39 ms p50,
# 61 ms p95 against 25 and 32 ms, as a loaded server would see.
SPIN = False
_EXTERNAL_BYTES = 1024  # weights this size or larger travel beside the protobuf, not in it


def onnx_missing() -> str | None:
    """None when `onnx` and `onnxruntime` import; otherwise why not (one line)."""
    try:
        for name in ("onnx", "onnxruntime"):
            importlib.import_module(name)
    except ImportError as exc:
        return f"cannot import {exc.name or 'onnx'}: {exc}".splitlines()[0]
    return None


class OnnxBert:
    """A sentence-transformers BERT folder run by ONNX Runtime; `encode(texts)` gives normalised vectors.

    `threads` is ORT's intra-op thread count (0 or None: ORT's default, one per physical core).
    Thread-safe: `InferenceSession.run` may be called from several threads at once.
    """

    def __init__(self, tokenizer: Any, config: dict[str, Any], weights: dict[str, np.ndarray],
                 max_tokens: int = 512, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        started = time.perf_counter()
        self.tokenizer = tokenizer
        self.hidden = int(config["hidden_size"])
        self.max_tokens = prepare_tokenizer(tokenizer, config, max_tokens)
        self.embeddings = Embeddings(config, weights)
        layers = read_layers(config, weights)
        model, external = encoder_graph(layers, self.hidden, int(config["num_attention_heads"]),
                                        float(config.get("layer_norm_eps", 1e-12)))
        options = ort.SessionOptions()
        options.add_external_initializers(list(external),
                                          [ort.OrtValue.ortvalue_from_numpy(a) for a in external.values()])
        options.intra_op_num_threads = max(0, int(threads or 0))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if SPIN else "0")
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        log.debug("ONNX Runtime %s: %d-layer encoder built and opened in %.2f s", ort.__version__, len(layers),
                  time.perf_counter() - started)

    @classmethod
    def load(cls, folder: Path, threads: int | None = None) -> "OnnxBert":
        """Read a sentence-transformers folder that `numpy_bert.supports` accepts."""
        why = onnx_missing()
        if why is not None:
            raise AssistantError(f"{why}: pip install onnxruntime onnx")
        return open_folder(Path(folder), "with ONNX Runtime", partial(cls, threads=threads))

    @property
    def dimension(self) -> int:
        return self.hidden

    def encode(self, texts: Sequence[str], max_batch_tokens: int = 4096) -> np.ndarray:
        """L2-normalised float32 vectors of `texts`, in their order. Texts run shortest first, in
        padded batches of at most `max_batch_tokens` tokens (padding included; one text at least)
        where padding adds at most a quarter (and 16 tokens) to the work."""
        if not texts:
            return np.zeros((0, self.hidden), dtype=np.float32)
        ids = [e.ids for e in self.tokenizer.encode_batch([str(t) for t in texts])]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), self.hidden), dtype=np.float32)
        batch: list[int] = []
        real = 0
        for i in order:  # lengths only grow, so the newest text sets the padded length
            padded = (len(batch) + 1) * len(ids[i])
            if batch and (padded > max_batch_tokens or padded > 1.25 * (real + len(ids[i])) + 16):
                out[batch] = self._forward([ids[j] for j in batch])
                batch, real = [], 0
            batch.append(i)
            real += len(ids[i])
        out[batch] = self._forward([ids[j] for j in batch])
        return out

    def _forward(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """One padded batch: embeddings in numpy, the encoder in ORT, masked mean pooling in numpy."""
        lengths = np.array([len(seq) for seq in batch])
        mask = np.arange(lengths.max())[None, :] < lengths[:, None]
        ids = np.concatenate([np.asarray(seq, dtype=np.int64) for seq in batch])
        positions = np.concatenate([np.arange(n) for n in lengths])
        hidden = np.zeros((*mask.shape, self.hidden), dtype=np.float32)
        hidden[mask] = self.embeddings(ids, positions)  # row-major order is the concatenation's
        (x,) = self.session.run(None, {"hidden": hidden, "mask": mask.astype(np.int64)})
        x[~mask] = 0.0
        pooled = x.sum(axis=1) / lengths[:, None].astype(np.float32)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))


def encoder_graph(layers: Sequence[Layer], hidden: int, heads: int,
                  eps: float) -> tuple[bytes, dict[str, np.ndarray]]:
    """A serialised ONNX model of the encoder layers, and its weight matrices and vectors by name,
    which the model marks as external data: `SessionOptions.add_external_initializers` hands them
    to the session, which copies them once (serialising 85 MB into the protobuf took 0.55 s more).
    Inputs `hidden` (batch, tokens, hidden) float32 and `mask` (batch, tokens) int64, 1 for real
    tokens; output the last hidden states."""
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    weights: list[Any] = []
    external: dict[str, np.ndarray] = {}

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        array = np.ascontiguousarray(value, dtype=dtype)
        if array.nbytes < _EXTERNAL_BYTES:
            weights.append(numpy_helper.from_array(array, name))
            return name
        external[name] = array  # a stub here: the session gets the array itself
        stub = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
        stub.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "weights"), ("offset", "0"), ("length", str(array.nbytes))):
            stub.external_data.add(key=key, value=value)
        weights.append(stub)
        return name

    def op(kind: str, *inputs: str, **attributes: Any) -> str:
        out = f"{kind.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(kind, list(inputs), [out], **attributes))
        return out

    size = hidden // heads
    split_heads = const("split_heads", [0, 0, heads, size], np.int64)
    merge_heads = const("merge_heads", [0, 0, hidden], np.int64)
    one, root2, half = const("one", 1.0), const("sqrt2", math.sqrt(2.0)), const("half", 0.5)
    scale = const("sqrt_head", math.sqrt(size))
    # The additive mask, as a PyTorch BERT export spells it: (1 - mask) * -10000, (batch, 1, 1, tokens).
    wide = op("Unsqueeze", "mask", const("axes", [1, 2], np.int64))
    keep = op("Cast", wide, to=TensorProto.FLOAT)
    masked = op("Mul", op("Sub", one, keep), const("masked", _MASKED))

    def dense(x: str, matrix: np.ndarray, bias: np.ndarray, name: str) -> str:
        return op("Add", op("MatMul", x, const(f"{name}.w", matrix)), const(f"{name}.b", bias))

    def norm(x: str, pair: tuple[np.ndarray, np.ndarray], name: str) -> str:
        return op("LayerNormalization", x, const(f"{name}.g", pair[0]), const(f"{name}.b", pair[1]),
                  axis=-1, epsilon=eps)

    x = "hidden"
    for i, layer in enumerate(layers):
        p = f"l{i}"
        q, k, v = (op("Reshape", dense(x, layer.qkv[:, j * hidden:(j + 1) * hidden],
                                       layer.qkv_bias[j * hidden:(j + 1) * hidden], f"{p}.{n}"), split_heads)
                   for j, n in enumerate("qkv"))
        scores = op("MatMul", op("Transpose", q, perm=[0, 2, 1, 3]), op("Transpose", k, perm=[0, 2, 3, 1]))
        probs = op("Softmax", op("Add", op("Div", scores, scale), masked), axis=-1)
        attended = op("MatMul", probs, op("Transpose", v, perm=[0, 2, 1, 3]))
        merged = op("Reshape", op("Transpose", attended, perm=[0, 2, 1, 3]), merge_heads)
        x = norm(op("Add", dense(merged, layer.out, layer.out_bias, f"{p}.out"), x), layer.norm1, f"{p}.norm1")
        up = dense(x, layer.up, layer.up_bias, f"{p}.up")
        gelu = op("Mul", op("Mul", up, op("Add", op("Erf", op("Div", up, root2)), one)), half)
        x = norm(op("Add", dense(gelu, layer.down, layer.down_bias, f"{p}.down"), x), layer.norm2, f"{p}.norm2")
    nodes.append(helper.make_node("Identity", [x], ["output"]))
    graph = helper.make_graph(
        nodes, "bert_encoder",
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "tokens", hidden]),
         helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "tokens", hidden])],
        initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kommune-assistent")
    model.ir_version = IR_VERSION
    return model.SerializeToString(), external
