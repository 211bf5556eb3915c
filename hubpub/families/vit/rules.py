"""The Vision Transformer's checkpoint names: timm's keys -> Keras weights, and Hugging Face transformers'
`ViTForImageClassification` (and `DeiTForImageClassificationWithTeacher`) names -> timm's.

timm's layout is the official one here: timm publishes the ViT (AugReg) and DeiT weights on the Hub.
Transformers splits the attention's qkv projection into query, key and value; `join_qkv` presents such a
checkpoint with the three joined, as timm stores them, one layer at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from hubpub.convert.readers import Checkpoint
from hubpub.convert.rules import Rule, rename
from hubpub.errors import CheckpointError
from hubpub.families.vit.config import ViT

RULES: tuple[Rule, ...] = (
    Rule("cls_token", "cls_token/embeddings", "unbatch"),  # (1, 1, C) -> (1, C)
    Rule("dist_token", "dist_token/embeddings", "unbatch"),
    Rule("pos_embed", "pos_embed/embeddings", "unbatch"),  # (1, N, C) -> (N, C)
    Rule("patch_embed.proj.weight", "patch_embed/kernel", "conv"),
    Rule("patch_embed.proj.bias", "patch_embed/bias"),
    Rule("blocks.{i}.norm1.weight", "block_{i}_norm1/gamma"),
    Rule("blocks.{i}.norm1.bias", "block_{i}_norm1/beta"),
    Rule("blocks.{i}.attn.qkv.weight", "block_{i}_attn_qkv/kernel", "linear"),
    Rule("blocks.{i}.attn.qkv.bias", "block_{i}_attn_qkv/bias"),
    Rule("blocks.{i}.attn.proj.weight", "block_{i}_attn_proj/kernel", "linear"),
    Rule("blocks.{i}.attn.proj.bias", "block_{i}_attn_proj/bias"),
    Rule("blocks.{i}.norm2.weight", "block_{i}_norm2/gamma"),
    Rule("blocks.{i}.norm2.bias", "block_{i}_norm2/beta"),
    Rule("blocks.{i}.mlp.fc1.weight", "block_{i}_mlp_fc1/kernel", "linear"),
    Rule("blocks.{i}.mlp.fc1.bias", "block_{i}_mlp_fc1/bias"),
    Rule("blocks.{i}.mlp.fc2.weight", "block_{i}_mlp_fc2/kernel", "linear"),
    Rule("blocks.{i}.mlp.fc2.bias", "block_{i}_mlp_fc2/bias"),
    Rule("norm.weight", "norm/gamma"),
    Rule("norm.bias", "norm/beta"),
    Rule("fc_norm.weight", "fc_norm/gamma"),
    Rule("fc_norm.bias", "fc_norm/beta"),
    Rule("head.weight", "head/kernel", "linear", head=True),
    Rule("head.bias", "head/bias", head=True),
    Rule("head_dist.weight", "head_dist/kernel", "linear", head=True),
    Rule("head_dist.bias", "head_dist/bias", head=True),
)


def rules_for(arch: ViT) -> tuple[Rule, ...]:
    return RULES


# transformers' prefix -> timm's; `{m}` is the model's own prefix: `vit` or `deit`. The qkv entry names
# what `join_qkv` makes of query, key and value.
HF_NAMES: tuple[tuple[str, str], ...] = (
    ("{m}.embeddings.cls_token", "cls_token"),
    ("{m}.embeddings.distillation_token", "dist_token"),
    ("{m}.embeddings.position_embeddings", "pos_embed"),
    ("{m}.embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    ("{m}.encoder.layer.{i}.layernorm_before.", "blocks.{i}.norm1."),
    ("{m}.encoder.layer.{i}.attention.attention.qkv.", "blocks.{i}.attn.qkv."),
    ("{m}.encoder.layer.{i}.attention.output.dense.", "blocks.{i}.attn.proj."),
    ("{m}.encoder.layer.{i}.layernorm_after.", "blocks.{i}.norm2."),
    ("{m}.encoder.layer.{i}.intermediate.dense.", "blocks.{i}.mlp.fc1."),
    ("{m}.encoder.layer.{i}.output.dense.", "blocks.{i}.mlp.fc2."),
    ("{m}.layernorm.", "norm."),
    ("classifier.", "head."),
    ("cls_classifier.", "head."),
    ("distillation_classifier.", "head_dist."),
)
_HF_ATTENTION = re.compile(r"^((?:vit|deit)\.encoder\.layer\.\d+\.attention\.attention)\.(query|key|value)\."
                           r"(weight|bias)$")


def _hf_names(model: str) -> tuple[tuple[str, str], ...]:
    return tuple((src.replace("{m}", model), dst) for src, dst in HF_NAMES)


def _layout(keys: set[str]) -> str | None:
    if "pos_embed" in keys or "patch_embed.proj.weight" in keys:
        return "timm"
    for model in ("vit", "deit"):
        if f"{model}.embeddings.position_embeddings" in keys:
            return model
    return None


def to_official(keys: Iterable[str]) -> tuple[str, dict[str, str]]:
    """(layout, {key: timm name}) for a timm or transformers checkpoint; a key of neither stays as it is
    (and the port names it unexpected)."""
    keys = set(keys)
    layout = _layout(keys)
    if layout == "timm":
        return "timm", {k: k for k in keys}
    if layout is not None:
        names = _hf_names(layout)
        return "transformers", {k: rename(k, names) or k for k in keys}
    sample = ", ".join(sorted(keys)[:4])
    raise CheckpointError(f"unrecognised checkpoint layout (not timm's nor transformers' ViT); keys: {sample}, ...")


def join_qkv(checkpoint: Checkpoint) -> Checkpoint:
    """A transformers checkpoint with each layer's query, key and value joined into one `qkv` tensor (rows
    in that order, as timm's qkv projection has them), read when asked for; any other checkpoint as it is.
    A layer missing one of the three keeps its parts, which the port then names."""
    keys = set(checkpoint)
    if _layout(keys) in (None, "timm"):
        return checkpoint
    groups: dict[str, list[str]] = {}
    for key in keys:
        if m := _HF_ATTENTION.match(key):
            groups.setdefault(f"{m.group(1)}.qkv.{m.group(3)}", []).append(key)
    parts = {}
    for joined in groups:
        head, leaf = joined.rsplit(".qkv.", 1)
        want = [f"{head}.{p}.{leaf}" for p in ("query", "key", "value")]
        found = [checkpoint.shape(k) for k in want if k in keys]
        if len(found) == 3 and len({s[1:] for s in found}) == 1:
            parts[joined] = want
    taken = {k for ks in parts.values() for k in ks}
    shapes = {k: checkpoint.shape(k) for k in keys - taken}
    for joined, ks in parts.items():
        first = checkpoint.shape(ks[0])
        shapes[joined] = (sum(checkpoint.shape(k)[0] for k in ks), *first[1:])

    def load(key: str) -> np.ndarray:
        if key in parts:
            return np.concatenate([checkpoint[k] for k in parts[key]], axis=0)
        return checkpoint[key]

    def release(key: str) -> None:
        for k in parts.get(key, [key]):
            checkpoint.release(k)

    return Checkpoint(checkpoint.path, checkpoint.file_format, shapes, load, checkpoint.close, release,
                      checkpoint.metadata)


def to_transformers(tensors: dict[str, np.ndarray], model: str = "vit") -> dict[str, np.ndarray]:
    """The same tensors under transformers' names, qkv split into query, key and value (tests, and a user
    checking a conversion)."""
    names = _hf_names(model)
    out = {}
    for key, value in tensors.items():
        if m := re.fullmatch(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", key):
            for part, piece in zip(("query", "key", "value"), np.split(value, 3, axis=0), strict=True):
                out[f"{model}.encoder.layer.{m.group(1)}.attention.attention.{part}.{m.group(2)}"] = piece
            continue
        new = rename(key, names, reverse=True)
        if new is None:
            raise CheckpointError(f"no transformers name for timm key {key!r}")
        out[new] = value
    return out
