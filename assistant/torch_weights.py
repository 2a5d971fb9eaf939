"""How a loaded sentence-transformers model holds its weights in memory.

`own_weights` lets the weights file's memory map close; `float16_token_table`
keeps the packaged model's token table in float16 while everything after the
lookup computes in float32. Both leave the vectors unchanged and lower peak RSS
(README, Performance). Used by `embedding.SentenceTransformerEmbedder` after load.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["own_weights", "float16_token_table"]


def own_weights(model: Any, leave: Sequence[Any] = ()) -> int:
    """Give every parameter and buffer that borrows its memory a copy of its own; returns how many.

    transformers loads the float32 tensors of a safetensors file (biases, layer norms) as
    views into the file's memory map, which keeps the whole map, about 0.22 GB for the
    default model, resident while the model lives. These storages are the ones that cannot
    be resized. Copying them (a few hundred KB) lets the map close. Parameter objects stay
    the same, so tied weights stay tied. Tensors in `leave` keep the memory they have.
    """
    import torch

    copied = 0
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if all(tensor is not t for t in leave) and not tensor.untyped_storage().resizable():
                tensor.data = tensor.data.clone()
                copied += 1
    return copied


def float16_token_table(model: Any) -> tuple[Any, ...]:
    """Compute in float32, but keep the token-embedding table in float16; returns the table's parameters.

    For a model loaded in float16 whose weights are stored as float16: every other weight
    becomes float32, and the table's lookups are cast to float32 on the way out. The table
    is most of a small multilingual model (250,037 tokens x 384 for the packaged
    multilingual-e5-small: 192 MB in float16, 384 MB in float32), and a lookup reads a few
    rows of it. Since the stored values are float16 either way, every computation after the
    lookup, and so every vector, is exactly what a float32 copy of the whole model gives.
    The table stays in the memory the loader read it into (`own_weights(leave=...)`):
    copying it would cost its size again at the peak.
    """
    import torch

    transformer = model[0].auto_model
    table = transformer.get_input_embeddings()
    kept = tuple(table.parameters())
    with torch.no_grad():
        for tensor in [*transformer.parameters(), *transformer.buffers()]:
            if all(tensor is not t for t in kept) and tensor.is_floating_point() and tensor.dtype != torch.float32:
                tensor.data = tensor.data.float()
    table.register_forward_hook(lambda module, args, output: output.float())
    return kept
