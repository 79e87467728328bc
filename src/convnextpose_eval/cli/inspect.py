"""``python -m convnextpose_eval.inspect FILE_OR_DIR [--json]``: say what a checkpoint holds."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from ..checkpoint.architecture import infer_arch, match_variant
from ..checkpoint.reader import read_checkpoint
from ..common.errors import EvalError, command, one_line
from ..config.compose import released_variants
from ..network import ConvNeXtPose, count_parameters
from ..network.spec import specs_of
from ..sample.generator import is_sample_checkpoint


def describe(path: str) -> dict[str, Any]:
    """The architecture and provenance a checkpoint implies, as plain data."""
    ckpt = read_checkpoint(path)
    known = specs_of(released_variants())
    spec = infer_arch(ckpt, known)
    with torch.device("meta"):  # only the count is needed: nothing is allocated
        num_params = count_parameters(ConvNeXtPose(spec))
    return {
        "variant": match_variant(spec, known),
        "depths": list(spec.depths),
        "dims": list(spec.dims),
        "head_channels": spec.head_channels,
        "head_upsample": list(spec.head_upsample),
        "depth_dim": spec.depth_dim,
        "heatmap_size": spec.heatmap_size,
        "joint_num": spec.joint_num,
        "epoch": ckpt.epoch,
        "key_style": ckpt.key_style,
        "dtype_note": ckpt.dtype_note,
        "num_params": num_params,
        "sha256": ckpt.sha256,
        "path": str(ckpt.path),
        "synthetic": is_sample_checkpoint(ckpt.path),
    }


def _format(info: dict[str, Any]) -> str:
    rows = [
        ("file", info["path"] + ("  (SYNTHETIC sample checkpoint: random weights)" if info["synthetic"] else "")),
        ("variant", info["variant"] or "none (matches no released variant)"),
        ("depths", ",".join(map(str, info["depths"]))),
        ("dims", ",".join(map(str, info["dims"]))),
        ("head channels", info["head_channels"]),
        ("head upsampling", ",".join("up" if u else "none" for u in info["head_upsample"])),
        ("depth_dim", info["depth_dim"]),
        ("heatmap", f"{info['heatmap_size']}x{info['heatmap_size']}"),
        ("joints", info["joint_num"]),
        ("epoch", info["epoch"]),
        ("key style", info["key_style"]),
        ("weights", info["dtype_note"] or "float32"),
        ("parameters", f"{info['num_params']:,}"),
        ("sha256", info["sha256"]),
    ]
    return "\n".join(f"{name:<16}{value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    """Print the description (text or JSON); a bad file gives one ``error:`` line and exit status 2."""
    parser = argparse.ArgumentParser(prog=f"{command()} inspect", description=__doc__)
    parser.add_argument("path", help="a ConvNeXtPose_*.tar, snapshot_N.pth(.tar), state dict, or unzipped snapshot folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        info = describe(args.path)
    except EvalError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(json.dumps(info) if args.json else _format(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
