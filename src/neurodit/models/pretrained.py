"""Pretrained DiT weights in, with shape-checked surgery for our classes and channels.

``load_init(source, preset, num_classes)`` accepts
- a hub id (``facebook/DiT-XL-2-256``, subfolder ``transformer``), read from the local HF cache;
- a local diffusers folder (``config.json`` + safetensors; e.g. a previous run's ``RUN_DIR/model``);
- an original facebookresearch/DiT checkpoint (Peebles & Xie 2023): ``DiT-XL-2-256x256.pt`` (a plain
  state dict) or one saved by DiT's ``train.py`` (``{"model", "ema", "opt", "args"}``: "ema" is used),
  read with ``torch.load(weights_only=True)``; or a ``.safetensors`` file of either key format.

Original -> diffusers key mapping (written here; checked against a real ``DiTTransformer2DModel``):
  x_embedder.proj.*                -> pos_embed.proj.*
  pos_embed (1, T, W) fixed sin-cos -> not copied: checked equal to the sin-cos table diffusers recomputes
  t_embedder.mlp.{0,2}.*           -> transformer_blocks.i.norm1.emb.timestep_embedder.linear_{1,2}.*  (every i)
  y_embedder.embedding_table.weight -> transformer_blocks.i.norm1.emb.class_embedder.embedding_table.weight
  blocks.i.attn.qkv.* (3W, W)      -> transformer_blocks.i.attn1.to_{q,k,v}.* (split in 3 along dim 0)
  blocks.i.attn.proj.*             -> transformer_blocks.i.attn1.to_out.0.*
  blocks.i.mlp.fc1.* / fc2.*       -> transformer_blocks.i.ff.net.0.proj.* / ff.net.2.*
  blocks.i.adaLN_modulation.1.*    -> transformer_blocks.i.norm1.linear.*
  final_layer.adaLN_modulation.1.* -> proj_out_1.*
  final_layer.linear.*             -> proj_out_2.*
Known difference that weights cannot fix: diffusers' DiT embeds timesteps with frequencies
exp(-ln(1e4) k / (128 - 1)) (``downscale_freq_shift=1``), the original with / 128; the official diffusers
conversion has the same difference, and finetuning absorbs it.

Adaptation to the target preset (every copied tensor's shape is checked):
- class table (rows = classes + null, last row = null): same class count -> copied; otherwise our
  rows start at the mean of the source's real-class rows plus small Gaussian noise (``class_noise`` x the
  rows' std), or at chosen source rows (``class_rows``), and the source null row becomes our last row;
- input channels: equal -> copied; source 1 -> C (several maps, ``prepare --maps``): the grey weights / C in
  every channel, the output head's grey rows copied to each map; source C -> 1 (pixel preset): patch-embed weights summed over the C
  input channels (= the source model seeing the gray mosaic in every channel; ``in_reduce="mean"``
  divides by C);
- output channels: DiT's learn_sigma head is [prediction channels, variance channels]; each group is
  kept (C -> C) or averaged (C -> 1); a variance group the source lacks starts at zero (adaLN-Zero);
- width, patch size, depth or head count differences -> NeuroditError (no sensible copy exists).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import DiTTransformer2DModel

from neurodit.errors import NeuroditError
from neurodit.models.dit import build_dit, disable_label_dropout
from neurodit.models.presets import ModelPreset

log = logging.getLogger(__name__)

# heads of facebookresearch/DiT's registry (models.py: DiT_models), to check args.model of train.py
_ORIGINAL_HEADS = {"S": 6, "B": 12, "L": 16, "XL": 16}
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_BLOCK_MAP = {  # original name inside blocks.i -> diffusers name inside transformer_blocks.i
    "attn.proj": "attn1.to_out.0",
    "mlp.fc1": "ff.net.0.proj",
    "mlp.fc2": "ff.net.2",
    "adaLN_modulation.1": "norm1.linear",
}
_EMB = "norm1.emb"
_TABLE = f"{_EMB}.class_embedder.embedding_table.weight"


# --------------------------------------------------------------------------- reading sources
def from_pretrained_checked(cls: Any, source: str | Path, subfolder: str | None = None, **kwargs: Any):
    """``cls.from_pretrained`` for a local folder or a hub id, from the local HF cache first.

    Never needs the network when the files are cached (``HF_HUB_OFFLINE=1`` is respected); a missing
    folder / uncached id / wrong subfolder becomes one NeuroditError line.
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NeuroditError(f"expected a diffusers folder (config.json + safetensors), got a file "
                                f"for {cls.__name__}", path)
        folder = path / subfolder if subfolder else path
        if not (folder / "config.json").is_file():
            raise NeuroditError(f"no config.json: not a diffusers {cls.__name__} folder", folder)
        from neurodit.weights import load_model_folder

        return load_model_folder(cls, folder, **kwargs)
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise NeuroditError(f"not found (neither a local folder nor a hub id like owner/name) for "
                            f"{cls.__name__}", text)
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    attempts = [True] if offline else [True, False]
    last: Exception | None = None
    for local_only in attempts:
        try:
            return cls.from_pretrained(text, subfolder=subfolder, local_files_only=local_only, **kwargs)
        except (OSError, ValueError) as exc:  # EnvironmentError / missing files / no network
            last = exc
    where = f"{text}" + (f" (subfolder {subfolder})" if subfolder else "")
    raise NeuroditError(
        f"{where}: hub weights not in the local Hugging Face cache and not downloadable here "
        f"({_first_line(last)}); on a machine with network run `huggingface-cli download {text}` "
        f"(or pass a local folder)"
    ) from last


def _first_line(exc: BaseException | None) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a ``.pt``/``.pth``/``.bin``/``.safetensors`` checkpoint safely -> (state dict, info).

    Never unpickles arbitrary objects: read by :func:`neurodit.weights.load_checkpoint` (safetensors, or
    ``torch.load(weights_only=True)``; ``argparse.Namespace`` is allowed, as DiT's train.py stores its
    args that way). Train-script checkpoints
    ``{"model", "ema", "opt", "args"}`` give the "ema" weights (DiT samples from EMA); ``module.`` (DDP)
    and ``_orig_mod.`` (torch.compile) prefixes are stripped. ``info``: entry used, args.model if any.
    """
    from neurodit.weights import load_checkpoint

    path = Path(path)
    info: dict[str, Any] = {"entry": None, "arch_name": None}
    obj: Any = load_checkpoint(path, allow=[argparse.Namespace], what="checkpoint")
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for entry in ("ema", "model", "state_dict"):
            if entry in obj and isinstance(obj[entry], Mapping):
                info["entry"] = entry
                args = obj.get("args")
                info["arch_name"] = getattr(args, "model", None) if args is not None else None
                obj = obj[entry]
                break
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise NeuroditError("checkpoint holds no state dict (expected tensors by name, or a dict with "
                            "'ema'/'model')", path)
    state = {}
    for k, v in obj.items():
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        state[k] = v
    return state, info


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


# --------------------------------------------------------------------------- original <-> diffusers
def _need(sd: Mapping[str, torch.Tensor], key: str, where: str) -> torch.Tensor:
    if key not in sd:
        raise NeuroditError(f"{where}: original DiT checkpoint lacks '{key}'")
    return sd[key]


def original_arch(sd: Mapping[str, torch.Tensor], where: str = "checkpoint") -> dict[str, int]:
    """Infer width, patch, in/out channels, depth and class count from original-format tensor shapes."""
    w = _need(sd, "x_embedder.proj.weight", where)  # (W, C_in, p, p)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise NeuroditError(f"{where}: x_embedder.proj.weight has shape {tuple(w.shape)}, "
                            "expected (width, in_channels, p, p)")
    width, cin, patch = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
    lin = _need(sd, "final_layer.linear.weight", where)  # (p*p*C_out, W)
    if lin.shape[0] % (patch * patch):
        raise NeuroditError(f"{where}: final_layer.linear.weight rows {lin.shape[0]} not a multiple of "
                            f"patch^2 = {patch * patch}")
    table = _need(sd, "y_embedder.embedding_table.weight", where)  # (classes + 1, W)
    layers = sorted({int(m.group(1)) for k in sd if (m := _BLOCK_RE.match(k))})
    if not layers or layers != list(range(len(layers))):
        raise NeuroditError(f"{where}: original DiT checkpoint has no contiguous blocks.0..N")
    return {"width": width, "in_channels": cin, "patch_size": patch,
            "out_channels": int(lin.shape[0]) // (patch * patch), "num_layers": len(layers),
            "num_classes": int(table.shape[0]) - 1}


def convert_original_state_dict(sd: Mapping[str, torch.Tensor], where: str = "checkpoint"
                                ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """facebookresearch/DiT state dict -> diffusers ``DiTTransformer2DModel`` state dict (same shapes).

    Returns (diffusers state dict, inferred architecture). The shared t/y embedders are copied into
    every block; ``pos_embed`` is checked against the fixed 2D sin-cos table and dropped.
    Unknown or missing keys raise NeuroditError.
    """
    arch = original_arch(sd, where)
    width = arch["width"]
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        used.add(key)
        return _need(sd, key, where)

    out["pos_embed.proj.weight"] = take("x_embedder.proj.weight")
    out["pos_embed.proj.bias"] = take("x_embedder.proj.bias")
    emb = {
        f"{_EMB}.timestep_embedder.linear_1.weight": take("t_embedder.mlp.0.weight"),
        f"{_EMB}.timestep_embedder.linear_1.bias": take("t_embedder.mlp.0.bias"),
        f"{_EMB}.timestep_embedder.linear_2.weight": take("t_embedder.mlp.2.weight"),
        f"{_EMB}.timestep_embedder.linear_2.bias": take("t_embedder.mlp.2.bias"),
        _TABLE: take("y_embedder.embedding_table.weight"),
    }
    for i in range(arch["num_layers"]):
        src, dst = f"blocks.{i}.", f"transformer_blocks.{i}."
        for name, tensor in emb.items():
            out[dst + name] = tensor  # one shared embedder -> a copy per block (diffusers layout)
        for part in ("weight", "bias"):
            qkv = take(f"{src}attn.qkv.{part}")  # (3W, W) / (3W,): rows [q | k | v]
            if qkv.shape[0] != 3 * width:
                raise NeuroditError(f"{where}: {src}attn.qkv.{part} has shape {tuple(qkv.shape)}, "
                                    f"expected first dim 3*{width}")
            q, k, v = qkv.chunk(3, dim=0)
            out[f"{dst}attn1.to_q.{part}"] = q
            out[f"{dst}attn1.to_k.{part}"] = k
            out[f"{dst}attn1.to_v.{part}"] = v
            for o, d in _BLOCK_MAP.items():
                out[f"{dst}{d}.{part}"] = take(f"{src}{o}.{part}")
    for part in ("weight", "bias"):
        out[f"proj_out_1.{part}"] = take(f"final_layer.adaLN_modulation.1.{part}")
        out[f"proj_out_2.{part}"] = take(f"final_layer.linear.{part}")
    if "pos_embed" in sd:
        used.add("pos_embed")
        _check_sincos(sd["pos_embed"], width, where)
    unknown = sorted(set(sd) - used)
    if unknown:
        raise NeuroditError(f"{where}: unexpected keys for an original DiT checkpoint: "
                            f"{', '.join(unknown[:5])}" + (" ..." if len(unknown) > 5 else ""))
    return {k: v.contiguous() for k, v in out.items()}, arch


def _check_sincos(pos: torch.Tensor, width: int, where: str) -> None:
    """The original ``pos_embed`` (1, T, W) must be the fixed 2D sin-cos table (diffusers recomputes it)."""
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    side = math.isqrt(pos.shape[-2]) if pos.ndim == 3 else 0
    if pos.ndim != 3 or side * side != pos.shape[1] or pos.shape[2] != width:
        raise NeuroditError(f"{where}: pos_embed has shape {tuple(pos.shape)}, expected (1, T, {width}) "
                            "with T a square")
    ref = get_2d_sincos_pos_embed(width, side, base_size=side, interpolation_scale=1.0, output_type="pt")
    err = float((pos[0].float() - ref.float()).abs().max())
    if err > 1e-4:
        raise NeuroditError(f"{where}: pos_embed is not DiT's fixed 2D sin-cos table (max diff {err:.2e}); "
                            "learned position embeddings cannot be loaded into diffusers' DiT")


def export_original_state_dict(model: DiTTransformer2DModel, *, strict: bool = True
                               ) -> dict[str, torch.Tensor]:
    """Inverse of ``convert_original_state_dict``: a diffusers DiT as a facebookresearch/DiT state dict.

    The original has one timestep/label embedder shared by all blocks; block 0's is written. With
    ``strict`` every block's embedder must equal block 0's (true for converted checkpoints and
    ``build_dit``), else NeuroditError: the export would silently change the model.
    Includes ``pos_embed`` (1, T, W) for the model's sample size.
    """
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    n = len(model.transformer_blocks)
    if strict:
        for i in range(1, n):
            for key in [k for k in sd if k.startswith(f"transformer_blocks.0.{_EMB}.")]:
                other = key.replace("transformer_blocks.0.", f"transformer_blocks.{i}.", 1)
                if not torch.equal(sd[key], sd[other]):
                    raise NeuroditError(f"block {i}'s timestep/label embedder differs from block 0's: the "
                                        "original DiT format has one shared embedder (strict=False "
                                        "exports block 0's)")
    b0 = f"transformer_blocks.0.{_EMB}."
    out = {
        "x_embedder.proj.weight": sd["pos_embed.proj.weight"],
        "x_embedder.proj.bias": sd["pos_embed.proj.bias"],
        "pos_embed": model.pos_embed.pos_embed.detach().cpu().float().clone(),  # (1, T, W) sin-cos
        "t_embedder.mlp.0.weight": sd[b0 + "timestep_embedder.linear_1.weight"],
        "t_embedder.mlp.0.bias": sd[b0 + "timestep_embedder.linear_1.bias"],
        "t_embedder.mlp.2.weight": sd[b0 + "timestep_embedder.linear_2.weight"],
        "t_embedder.mlp.2.bias": sd[b0 + "timestep_embedder.linear_2.bias"],
        "y_embedder.embedding_table.weight": sd[b0 + "class_embedder.embedding_table.weight"],
    }
    for i in range(n):
        src, dst = f"transformer_blocks.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            out[f"{dst}attn.qkv.{part}"] = torch.cat(
                [sd[f"{src}attn1.to_{x}.{part}"] for x in "qkv"], dim=0)  # 3 x (W, W) -> (3W, W)
            for o, d in _BLOCK_MAP.items():
                out[f"{dst}{o}.{part}"] = sd[f"{src}{d}.{part}"]
    for part in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{part}"] = sd[f"proj_out_1.{part}"]
        out[f"final_layer.linear.{part}"] = sd[f"proj_out_2.{part}"]
    return {k: v.clone().contiguous() for k, v in out.items()}


# --------------------------------------------------------------------------- adaptation
def _diffusers_arch(sd: Mapping[str, torch.Tensor], where: str) -> dict[str, int]:
    """Architecture of a diffusers-format DiT state dict, from tensor shapes."""
    try:
        w = sd["pos_embed.proj.weight"]  # (W, C_in, p, p)
        table = sd[f"transformer_blocks.0.{_TABLE}"]  # (classes + 1, W)
        lin = sd["proj_out_2.weight"]  # (p*p*C_out, W)
    except KeyError as exc:
        raise NeuroditError(f"{where}: not a DiT state dict (missing {exc.args[0]})") from None
    patch = int(w.shape[2])
    layers = {int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks.")}
    return {"width": int(w.shape[0]), "in_channels": int(w.shape[1]), "patch_size": patch,
            "out_channels": int(lin.shape[0]) // (patch * patch), "num_layers": len(layers),
            "num_classes": int(table.shape[0]) - 1}


def _adapt_in(w: torch.Tensor, cin: int, reduce: str, where: str, spread: bool = False) -> torch.Tensor:
    """Patch-embed weight (W, C_src, p, p) -> (W, cin, p, p); ``spread``: 1 -> cin allowed (pixel maps)."""
    if w.shape[1] == cin:
        return w
    if cin == 1:
        out = w.sum(dim=1, keepdim=True)  # gray mosaic = the same value in every source channel
        return out / w.shape[1] if reduce == "mean" else out
    if w.shape[1] == 1 and spread:  # a grey model into several maps: C equal channels embed as the grey mosaic did
        return w.repeat(1, cin, 1, 1) / cin
    raise NeuroditError(f"{where}: cannot adapt {w.shape[1]} input channels to {cin} (only C -> C, C -> 1, or 1 -> C for a pixel preset's maps)")


def _adapt_out(t: torch.Tensor, patch: int, src: tuple[int, int], dst: tuple[int, int],
               init: torch.Tensor, where: str, spread: bool = False) -> tuple[torch.Tensor, str]:
    """proj_out_2 weight (p*p*C_out, W) or bias (p*p*C_out,) from source to target output channels.

    Rows are ordered (p_row, p_col, channel) (diffusers unpatchify: "nhwpqc->nchpwq"), so channels are
    selected after a reshape to (p, p, C_out, ...). ``src``/``dst`` = (prediction channels, groups):
    groups = 2 with learn_sigma ([prediction | variance]), else 1.
    """
    (sc, sg), (dc, dg) = src, dst
    rest = t.shape[1:]
    x = t.reshape(patch, patch, sg, sc, *rest)  # (p, p, groups, C, [W])
    # groups the source lacks start at DiT's adaLN-Zero init: zero weights and bias
    y = torch.zeros_like(init).reshape(patch, patch, dg, dc, *rest)
    how = []
    for g in range(dg):
        if g >= sg:
            how.append("variance channels newly initialised (source has no learn_sigma)")
            continue
        if sc == dc:
            y[:, :, g] = x[:, :, g]
        elif dc == 1:
            y[:, :, g] = x[:, :, g].mean(dim=2, keepdim=True)  # gray = mean of the source channels
            how.append(f"group {g}: mean of {sc} channels")
        elif sc == 1 and spread:  # several maps from a grey model: every map starts from the grey prediction
            y[:, :, g] = x[:, :, g].expand_as(y[:, :, g])
            how.append(f"group {g}: the grey channel copied to {dc} maps")
        else:
            raise NeuroditError(f"{where}: cannot adapt {sc} output channels to {dc} (only C -> C, C -> 1, or 1 -> C for a pixel preset's maps)")
    if sg > dg:
        how.append("source variance channels dropped (target has no learn_sigma)")
    return y.reshape(t.shape[0] * dc * dg // (sc * sg), *rest), "; ".join(how) or "copied"


def _adapt_table(src: torch.Tensor, dst_init: torch.Tensor, class_init: str | list[int],
                 noise: float, gen: torch.Generator, where: str) -> tuple[torch.Tensor, str]:
    """Class table (K+1, W) -> (N+1, W); the last row is the null class in both."""
    k, n = src.shape[0] - 1, dst_init.shape[0] - 1
    if isinstance(class_init, str) and class_init == "auto":
        class_init = "copy" if k == n else "mean"
    if class_init == "copy":
        if k != n:
            raise NeuroditError(f"{where}: class_init='copy' needs equal class counts (source {k}, target {n})")
        return src.clone(), "copied"
    out = dst_init.clone()
    if class_init == "mean":
        real = src[:k].float()
        std = float(real.std()) if k > 1 else float(src.float().std())
        rows = real.mean(dim=0, keepdim=True) + noise * std * torch.randn(n, src.shape[1], generator=gen)
        out[:n] = rows.to(out.dtype)
        how = f"rows 0..{n - 1} = mean of {k} source rows + N(0, ({noise} x {std:.3g})^2)"
    elif isinstance(class_init, (list, tuple)):
        if len(class_init) != n or not all(0 <= int(r) < k for r in class_init):
            raise NeuroditError(f"{where}: class_rows must list {n} source rows in [0, {k})")
        out[:n] = src[[int(r) for r in class_init]]
        how = f"rows 0..{n - 1} = source rows {list(class_init)}"
    else:
        raise NeuroditError(f"class_init must be 'auto', 'copy', 'mean' or a list of rows, got {class_init!r}")
    out[n] = src[k]  # null class: source's last row -> our last row
    return out, how + f"; null row {n} = source row {k}"


def adapt_state_dict(src: Mapping[str, torch.Tensor], target: DiTTransformer2DModel, *,
                     class_init: str | list[int] = "auto", class_noise: float = 0.1, in_reduce: str = "sum",
                     seed: int = 0, where: str = "source", spread: bool = False) -> dict[str, Any]:
    """Copy a diffusers-format DiT state dict ``src`` into ``target`` with shape-checked adaptation.
    ``spread``: a one-channel source may fill several target channels (a pixel preset's maps; never latents).

    Returns a summary: ``copied`` (names copied unchanged), ``adapted`` ({name: how: e.g. new class
    rows, new zero variance channels, channel sums}), ``class_table`` (how the label table was made).
    Every target tensor comes from the source (else NeuroditError naming the missing one); width, patch
    or depth mismatches raise NeuroditError.
    """
    if in_reduce not in ("sum", "mean"):
        raise NeuroditError(f"in_reduce must be 'sum' or 'mean', got {in_reduce!r}")
    sa = _diffusers_arch(src, where)
    cfg = target.config
    tgt = target.state_dict()
    ta = _diffusers_arch(tgt, "target")
    for key in ("width", "patch_size", "num_layers"):
        if sa[key] != ta[key]:
            raise NeuroditError(f"{where}: source DiT has {key}={sa[key]} but the preset needs {ta[key]}; "
                                "choose the preset of the checkpoint's size (e.g. XL-2-256 for DiT-XL/2)")
    p = ta["patch_size"]

    def groups(arch: dict[str, int], cin: int) -> tuple[int, int]:
        cout = arch["out_channels"]
        if cout % cin or cout // cin not in (1, 2):
            raise NeuroditError(f"{where}: {cout} output channels is neither C nor 2C for {cin} input channels")
        return cin, cout // cin

    src_groups, tgt_groups = groups(sa, sa["in_channels"]), groups(ta, int(cfg.in_channels))
    new: dict[str, torch.Tensor] = {}
    copied: list[str] = []
    adapted: dict[str, str] = {}
    unknown = sorted(set(src) - set(tgt))
    if unknown:
        raise NeuroditError(f"{where}: keys not in the target DiT: {', '.join(unknown[:5])}")
    table_how = None
    for name, init in tgt.items():
        if name not in src:
            continue
        t = src[name].to(init.dtype)
        how = None
        if name == "pos_embed.proj.weight" and t.shape[1] != init.shape[1]:
            t = _adapt_in(t, init.shape[1], in_reduce, where, spread)
            how = f"{sa['in_channels']} -> {init.shape[1]} input channels ({in_reduce})"
        elif name.startswith("proj_out_2.") and (src_groups != tgt_groups):
            t, how = _adapt_out(t, p, src_groups, tgt_groups, init, where, spread)
            how = f"{sa['out_channels']} -> {ta['out_channels']} output channels: {how}"
        elif name.endswith(_TABLE) and (t.shape != init.shape or class_init != "auto"):
            # same seed for every block: identical source tables stay identical (one shared embedder)
            gen = torch.Generator().manual_seed(seed)
            t, how = _adapt_table(t, init, class_init, class_noise, gen, where)
            table_how = how
        if t.shape != init.shape:
            raise NeuroditError(f"{where}: {name} has shape {tuple(t.shape)}, target needs {tuple(init.shape)}")
        new[name] = t
        if how:
            adapted[name] = how
        else:
            copied.append(name)
    missing = sorted(set(tgt) - set(new))  # pos_embed.pos_embed (fixed sin-cos) is not in state_dict()
    if missing:
        raise NeuroditError(f"{where}: source lacks {', '.join(missing[:5])}")
    target.load_state_dict(new, strict=True)
    return {"source_arch": sa, "target_arch": ta, "copied": copied, "adapted": adapted,
            "class_table": table_how or "copied"}


# --------------------------------------------------------------------------- entry point
def load_init(source: str | Path, preset: ModelPreset, num_classes: int, subfolder: str | None = None, *,
              class_init: str | list[int] = "auto", class_noise: float = 0.1, in_reduce: str = "sum",
              seed: int = 0, return_summary: bool = False
              ) -> DiTTransformer2DModel | tuple[DiTTransformer2DModel, dict[str, Any]]:
    """A DiT for ``preset`` with ``num_classes`` classes, initialised from pretrained ``source``.

    ``source``: hub id (subfolder defaults to ``transformer``), diffusers folder, original ``.pt``/
    ``.pth`` (plain state dict or train.py ``{"model","ema",...}``, "ema" preferred) or ``.safetensors``.
    ``class_init``: ``"auto"`` (copy the table when class counts match, else ``"mean"``), ``"copy"``,
    ``"mean"`` (source mean row + ``class_noise`` x std Gaussian noise, seeded by ``seed``), or a list of
    ``num_classes`` source rows. ``in_reduce``: ``"sum"`` or ``"mean"`` for C -> 1 input channels.
    The result has label dropout 0 in every block; with ``return_summary`` also returns the summary of
    what was copied unchanged / adapted (new class rows, channel changes) (also logged at INFO).
    """
    text = str(source)
    path = Path(text).expanduser()
    info: dict[str, Any] = {"source": text}
    heads = None
    if path.is_file():
        raw, meta = read_checkpoint(path)
        info.update(meta)
        if "x_embedder.proj.weight" in raw:
            info["format"] = "original"
            sd, _ = convert_original_state_dict(raw, where=str(path))
            name = meta.get("arch_name")
            if name:  # e.g. "DiT-XL/2": the head count is not visible in tensor shapes
                size = str(name).split("-")[-1].split("/")[0]
                heads = _ORIGINAL_HEADS.get(size)
        elif "pos_embed.proj.weight" in raw:
            info["format"] = "diffusers state dict"
            sd = dict(raw)
        else:
            raise NeuroditError("checkpoint is neither an original DiT nor a diffusers DiT state dict "
                                "(no x_embedder.proj.weight / pos_embed.proj.weight)", path)
    else:
        sub = subfolder
        if sub is None and not path.exists():
            sub = "transformer"  # hub pipelines (facebook/DiT-XL-2-256) keep the DiT there
        elif sub is None and path.is_dir() and not (path / "config.json").is_file() \
                and (path / "transformer" / "config.json").is_file():
            sub = "transformer"  # a saved DiTPipeline folder
        src_model = from_pretrained_checked(DiTTransformer2DModel, text, sub, torch_dtype=torch.float32)
        info["format"] = "diffusers"
        info["subfolder"] = sub
        heads = int(src_model.config.num_attention_heads)
        sd = {k: v for k, v in src_model.state_dict().items() if not k.endswith("pos_embed.pos_embed")}
        del src_model
    if heads is not None and heads != preset.num_attention_heads:
        raise NeuroditError(f"{text}: source DiT has {heads} attention heads but preset '{preset.name}' "
                            f"has {preset.num_attention_heads}")
    # every tensor is overwritten below (new variance channels are zeroed there), so skip DiT's init:
    # it costs ~10 s for XL on 2 cores
    model = build_dit(preset, num_classes, dit_init=False)
    summary = adapt_state_dict(sd, model, class_init=class_init, class_noise=class_noise,
                               in_reduce=in_reduce, seed=seed, where=text,
                               spread=preset.space == "pixel" and preset.maps > 1)
    summary.update(info)
    disable_label_dropout(model)
    log.info("load_init %s (%s): %d tensors copied unchanged, %d adapted (%s)",
             text, summary["format"], len(summary["copied"]), len(summary["adapted"]),
             "; ".join(sorted(set(summary["adapted"].values())))[:300])
    return (model, summary) if return_summary else model
