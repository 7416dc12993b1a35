#!/usr/bin/env python
"""Where a training step's time goes, by TensorFlow op type, read from the TensorFlow profiler.

For each variant of ``bench_step.py`` (seed-article BN-only, bnlib BN-only, bnlib full), traces a
few ``train_on_batch`` steps with ``tf.profiler.experimental`` and sums the executor's op events
(the ``tf_Compute`` threads of the host plane in the ``.xplane.pb`` trace) by op type.  Ops on the
inter-op threads can overlap, so the sums are op time, not wall time; the table gives each op
type's milliseconds per step and its share of the variant's op time.

    python benchmarks/profile_step.py --model resnet20 --steps 5 [--top 15] [--logdir DIR]

The raw traces stay in ``--logdir`` and open in TensorBoard's profile plugin where one is installed.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench_step first: it imports TensorFlow through bnlib, so bnlib's defaults (oneDNN) apply.
from bench_step import LABELS, make_variant  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from bnlib.runtime import onednn_enabled  # noqa: E402

VARIANTS = ("seed", "bnlib", "full")
# Op-type groups that answer "which part of the network costs what".
GROUPS = {
    "Conv2D": "convolution forward",
    "FusedConv2D": "convolution forward",
    "Conv2DBackpropInput": "convolution backward-data",
    "Conv2DBackpropFilter": "convolution backward-filter (kernel gradient)",
    "FusedBatchNormV3": "batchnorm (fused kernel)",
    "FusedBatchNormGradV3": "batchnorm (fused kernel)",
    "FusedBatchNormEx": "batchnorm (fused kernel)",  # oneDNN: batchnorm + relu in one op
    "Relu": "relu", "ReluGrad": "relu",
}
ELEMENTWISE = {"Mul", "AddV2", "Sub", "Rsqrt", "Mean", "Sum", "SquaredDifference", "Square",
               "RealDiv", "Neg", "BroadcastTo", "Reshape", "StopGradient", "Maximum", "Sqrt",
               "Reciprocal", "Cast", "AddN", "Tile", "ZerosLike", "OnesLike", "Fill"}


def trace_steps(model, x, y, steps: int, logdir: Path) -> Path:
    for _ in range(3):  # trace and warm up outside the profile
        model.train_on_batch(x, y)
    tf.profiler.experimental.start(str(logdir))
    for _ in range(steps):
        model.train_on_batch(x, y)
    tf.profiler.experimental.stop()
    return sorted(logdir.rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)[-1]


def op_times(xplane_file: Path) -> dict[str, float]:
    """Total picoseconds per op type over the executor's op events of the host plane."""
    space = xplane_pb2.XSpace()
    space.ParseFromString(xplane_file.read_bytes())
    totals: dict[str, float] = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                # Op events are named "node_name:OpType" and carry the type as display name.
                if meta.display_name and ":" in meta.name:
                    totals[meta.display_name] += event.duration_ps
    return totals


def group_of(op_type: str) -> str:
    # oneDNN's graph rewrites rename ops: _MklNativeConv2D, _MklFusedBatchNormGradV3, _FusedConv2D.
    for prefix in ("_MklNative", "_Mkl", "_"):
        if op_type.startswith(prefix):
            op_type = op_type[len(prefix):]
            break
    if op_type in GROUPS:
        return GROUPS[op_type]
    if op_type in ELEMENTWISE:
        return "elementwise / reductions (incl. unfused batchnorm)"
    if "Variable" in op_type or op_type in ("AssignSubVariableOp", "AssignAddVariableOp"):
        return "variable reads / optimizer updates"
    return "other"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--top", type=int, default=12, help="op types listed per variant")
    p.add_argument("--logdir", default=None, help="where traces go (default: a temporary folder)")
    args = p.parse_args(argv)
    logroot = Path(args.logdir or tempfile.mkdtemp(prefix="bnlib-profile-"))
    x = tf.random.normal((args.batch, 32, 32, 3))
    y = tf.random.uniform((args.batch,), 0, 10, dtype=tf.int64)

    per_variant = {}
    for variant in VARIANTS:
        model = make_variant(args.model, variant, xla=False)
        trace = trace_steps(model, x, y, args.steps, logroot / variant)
        per_variant[variant] = {k: v / 1e9 / args.steps for k, v in op_times(trace).items()}  # ms/step
        print(f"traced {variant}: {trace}", file=sys.stderr, flush=True)

    out = [f"## Op time per training step by group, {args.model}, batch {args.batch} "
           f"(TensorFlow profiler, {args.steps} steps, ms per step; TF {tf.__version__}, oneDNN "
           f"{'on' if onednn_enabled() else 'off'})", ""]
    groups = sorted({group_of(op) for ops in per_variant.values() for op in ops})
    out += ["| group | " + " | ".join(LABELS[v] for v in VARIANTS) + " |",
            "|---|" + "---:|" * len(VARIANTS)]
    grouped = {v: collections.Counter() for v in VARIANTS}
    for v, ops in per_variant.items():
        for op, ms in ops.items():
            grouped[v][group_of(op)] += ms
    for g in sorted(groups, key=lambda g: -grouped["seed"][g]):
        out.append(f"| {g} | " + " | ".join(f"{grouped[v][g]:.1f}" for v in VARIANTS) + " |")
    out.append("| **total op time** | " + " | ".join(
        f"**{sum(grouped[v].values()):.1f}**" for v in VARIANTS) + " |")

    for v in VARIANTS:
        total = sum(per_variant[v].values())
        out += ["", f"Top op types, {LABELS[v]}:", "", "| op type | ms/step | share |", "|---|---:|---:|"]
        for op, ms in sorted(per_variant[v].items(), key=lambda kv: -kv[1])[: args.top]:
            out.append(f"| {op} | {ms:.1f} | {ms / total:.0%} |")
    out += ["", f"Traces: {logroot}"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
