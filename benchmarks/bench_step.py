#!/usr/bin/env python
"""Training-step speed of BN-only training: the seed article's way vs bnlib's, and vs full training.

Variants, per model (random 32x32x3 data, no disk access):

* (a) ``seed``:  the seed article's set-up.  The bnlib model cloned with every bnlib ``BatchNorm``
  replaced by plain ``keras.layers.BatchNormalization`` (same config, same momentum, same
  weights); every non-BN layer frozen with ``layer.trainable = False`` (BN layers stay trainable,
  so they keep normalising with batch statistics).
* (b) ``bnlib``: bnlib's model (fused ``BatchNorm``) with the variables of every non-BN layer
  frozen (``variable.trainable = False``: convolution kernels and the ``output`` Dense).
* (c) ``full``:  bnlib's model with everything trainable.
* optional ``keras-vars``: Keras' BN with bnlib's variable flags (isolates the fused kernel).
* optional ``fed``: (b) fed by the tf.data pipeline below instead of a fixed batch (first model);
  taking the next batch from the pipeline counts in its step time.
* optional ``bnlib-xla`` / ``full-xla``: (b) / (c) compiled with XLA (``jit_compile=True``), to
  measure XLA's effect in the same process (``--xla`` instead compiles every Keras variant with it).
* optional ``bnlib-bf16`` / ``full-bf16``: (b) / (c) built under Keras' ``mixed_bfloat16`` policy
  (bfloat16 convolutions and activations, float32 variables; bnlib's ``precision`` option), to
  measure 16-bit compute in the same process: CPUs with AMX (Intel Xeon since Sapphire Rapids) run
  bfloat16 convolutions in hardware.
* optional ``bnlib-fp16`` / ``full-fp16``: the same under ``mixed_float16`` (float16 compute, the
  GPU setting; Keras adds loss scaling), to see what it costs or gains on a CPU.
* optional ``torch-bn`` / ``torch-full``: the same ResNet in PyTorch (``torch_resnet.py``, eager,
  channels-last unless ``--torch-format contiguous``), BN-only and full, SGD momentum 0.9; needs a
  PyTorch CPU build (``pip install torch --index-url https://download.pytorch.org/whl/cpu``).

All Keras variants are compiled with SGD (momentum 0.9) and sparse cross-entropy and stepped with
``train_on_batch`` (synchronous: it returns the loss as a number); PyTorch steps end with
``loss.item()``.  They live in one process and
are timed in interleaved rounds, because absolute speed drifts by up to 1.8x on shared machines:
within a round the variants alternate step by step (the order rotates each round); the table
reports the median step time over all timed steps, and each ratio is the median, over steps, of the
ratio between the two variants' steps of the same cycle.

The input pipeline is a tf.data pipeline over 50,000 random uint8 images: normalise, pad 4, random
32x32 crop, random horizontal flip, shuffle (full buffer), batch, prefetch.  Its throughput is
measured alone over one epoch and compared with BN-only training throughput.

Usage::

    python benchmarks/bench_step.py --models resnet20,resnet56 --rounds 3 --steps 10
    python benchmarks/bench_step.py --xla --models resnet20 --rounds 2 --steps 5
    python benchmarks/bench_step.py --models resnet20 --breakdown   # forward/backward split
    python benchmarks/bench_step.py --variants seed,bnlib,full,torch-bn,torch-full   # vs PyTorch
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/bench_step.py          # TensorFlow's Eigen kernels

Every variant runs with bnlib's TensorFlow defaults (TensorFlow is imported through bnlib.runtime, so
TensorFlow's oneDNN CPU kernels are on unless TF_ENABLE_ONEDNN_OPTS=0), in one process, so the
seed-article variant gets the same kernels as bnlib's.  ``profile_step.py`` shows, per op type,
where each variant's step time goes.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

# TensorFlow through bnlib: its defaults (oneDNN on) apply to every variant, and the import is quiet.
from bnlib.runtime import bfloat16_hardware, keras, onednn_enabled, tf  # noqa: E402
from bnlib import models as bn_models  # noqa: E402
from bnlib.batchnorm import BatchNorm  # noqa: E402

LABELS = {
    "seed": "(a) keras BN-only (seed article)",
    "bnlib": "(b) bnlib BN-only",
    "full": "(c) bnlib full",
    "keras-vars": "keras BN, variable flags",
    "fed": "(b) fed by tf.data",
    "bnlib-xla": "(b) with XLA",
    "full-xla": "(c) with XLA",
    "bnlib-bf16": "(b) in mixed bfloat16",
    "full-bf16": "(c) in mixed bfloat16",
    "bnlib-fp16": "(b) in mixed float16",
    "full-fp16": "(c) in mixed float16",
    "torch-bn": "(d) PyTorch BN-only",
    "torch-full": "(e) PyTorch full",
}
TORCH_VARIANTS = {"torch-bn": "bn", "torch-full": "all"}
PRECISIONS = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}  # variant suffix -> Keras policy
RATIOS = [  # (column header, numerator variant, denominator variant): step-time ratios
    ("bnlib BN-only speed-up over seed article = t(a)/t(b)", "seed", "bnlib"),
    ("BN-only / full step time = t(b)/t(c)", "bnlib", "full"),
    ("fused-kernel effect = t(keras-vars)/t(b)", "keras-vars", "bnlib"),
    ("XLA effect on BN-only = t(b)/t(b with XLA)", "bnlib", "bnlib-xla"),
    ("XLA effect on full = t(c)/t(c with XLA)", "full", "full-xla"),
    ("bfloat16 effect on BN-only = t(b)/t(b in bfloat16)", "bnlib", "bnlib-bf16"),
    ("bfloat16 effect on full = t(c)/t(c in bfloat16)", "full", "full-bf16"),
    ("BN-only / full step time in bfloat16", "bnlib-bf16", "full-bf16"),
    ("float16 effect on BN-only = t(b)/t(b in float16)", "bnlib", "bnlib-fp16"),
    ("float16 effect on full = t(c)/t(c in float16)", "full", "full-fp16"),
    ("bnlib BN-only speed vs PyTorch BN-only = t(d)/t(b)", "torch-bn", "bnlib"),
    ("bnlib full speed vs PyTorch full = t(e)/t(c)", "torch-full", "full"),
    ("PyTorch BN-only / full step time = t(d)/t(e)", "torch-bn", "torch-full"),
]
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet20,resnet56", help="comma-separated bnlib model names")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--steps", type=int, default=10, help="timed train_on_batch steps per variant per round")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--xla", action="store_true", help="compile with jit_compile=True")
    p.add_argument("--variants", default="seed,bnlib,full",
                   help="comma-separated subset of: " + ", ".join(LABELS))
    p.add_argument("--pipeline-images", type=int, default=50_000)
    p.add_argument("--no-pipeline", action="store_true", help="skip the tf.data measurement")
    p.add_argument("--torch-format", choices=("channels_last", "contiguous"), default="channels_last",
                   help="PyTorch memory format (channels_last is the faster one on CPUs)")
    p.add_argument("--breakdown", action="store_true",
                   help="also time forward / backward / optimizer for the first model, and one BN layer")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(LABELS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {sorted(LABELS)}")
    if "fed" in args.variants and args.no_pipeline:
        p.error("variant 'fed' needs the pipeline; drop --no-pipeline")
    if TORCH_VARIANTS.keys() & set(args.variants):
        try:
            import torch  # noqa: F401
        except ImportError:
            p.error("variants torch-bn/torch-full need PyTorch: pip install torch "
                    "--index-url https://download.pytorch.org/whl/cpu (or drop them)")
    return args


# ----------------------------------------------------------------------------------------------
# models


def keras_bn_clone(model: keras.Model) -> keras.Model:
    """The same network with every bnlib BatchNorm replaced by keras.layers.BatchNormalization."""
    def swap(layer):
        config = layer.get_config()
        if isinstance(layer, BatchNorm):
            return keras.layers.BatchNormalization.from_config(config)
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=swap)
    clone.set_weights(model.get_weights())
    assert not any(isinstance(l, BatchNorm) for l in clone.layers)
    return clone


def freeze_layers_seed(model: keras.Model) -> None:
    """Seed article: layer.trainable = False on every layer except BatchNormalization."""
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def freeze_variables_bnlib(model: keras.Model) -> None:
    """bnlib: variable.trainable = False for every variable of a non-BN layer."""
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            for v in layer.weights:
                v.trainable = False


def compile_model(model: keras.Model, xla: bool) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=xla,
    )
    return model


def ratio_text(ratio: float) -> str:
    """``0.78x``; a ratio under 0.1 with two significant digits (``0.004x``), never ``0.00x``."""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def make_variant(name: str, variant: str, xla: bool) -> keras.Model:
    keras.utils.set_random_seed(0)
    precision = PRECISIONS.get(variant.rsplit("-", 1)[-1], "float32")
    keras.mixed_precision.set_global_policy(precision)  # layers take the policy they are built with
    try:
        model = bn_models.build(name)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if variant == "seed":
        model = keras_bn_clone(model)
        freeze_layers_seed(model)
    elif variant == "keras-vars":
        model = keras_bn_clone(model)
        freeze_variables_bnlib(model)
    elif variant in ("bnlib", "fed", "bnlib-xla", "bnlib-bf16", "bnlib-fp16"):
        freeze_variables_bnlib(model)
    return compile_model(model, xla or variant.endswith("-xla"))


def make_torch_step(name: str, variant: str, data, args):
    """(step(), trainable parameter count) for the PyTorch model; asserts bnlib's parameter counts."""
    import torch_resnet  # benchmarks/torch_resnet.py; imports torch

    model = torch_resnet.build(name, TORCH_VARIANTS[variant])
    expected = count_params(bn_models.build(name).trainable_variables)  # γ, β, kernels, biases
    if torch_resnet.parameter_count(model) != expected:
        raise SystemExit(f"PyTorch {name} has {torch_resnet.parameter_count(model):,} parameters, "
                         f"bnlib's {expected:,}: fix benchmarks/torch_resnet.py")
    x, y = (t.numpy() for t in data)
    step = torch_resnet.Stepper(model, x, y, channels_last=args.torch_format == "channels_last")
    return step, torch_resnet.parameter_count(model, trainable_only=True)


def count_params(variables) -> int:
    return int(sum(np.prod(v.shape) for v in variables))


# ----------------------------------------------------------------------------------------------
# input pipeline


def make_pipeline(n_images: int, batch: int) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n_images,), dtype=np.int64)
    mean = tf.constant(CIFAR_MEAN, tf.float32)
    std = tf.constant(CIFAR_STD, tf.float32)

    def augment(image, label):
        x = (tf.cast(image, tf.float32) / 255.0 - mean) / std
        x = tf.pad(x, [[4, 4], [4, 4], [0, 0]])
        x = tf.image.random_crop(x, (32, 32, 3))
        x = tf.image.random_flip_left_right(x)
        return x, label

    return (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(n_images, reshuffle_each_iteration=True)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def time_pipeline(ds: tf.data.Dataset, batch: int) -> dict:
    """One epoch: total throughput (shuffle-buffer fill included) and after the first batch."""
    t0 = time.perf_counter()
    it = iter(ds)
    next(it)
    t1 = time.perf_counter()
    n = 1
    for _ in it:
        n += 1
    t2 = time.perf_counter()
    return {
        "batches": n,
        "first_batch_s": t1 - t0,
        "epoch_img_s": n * batch / (t2 - t0),
        "steady_img_s": (n - 1) * batch / (t2 - t1),
    }


# ----------------------------------------------------------------------------------------------
# timing


def run_rounds(runs: dict, args) -> dict:
    """runs: {(model, variant): step()}.  Returns {(model, variant): [[seconds per step]] per round}.

    Variants alternate step by step (a, b, c, a, b, c, ...; the order rotates each round), so
    that machine-speed drift hits all of them alike and step i of one variant can be paired with
    step i of another for ratios.
    """
    keys = list(runs)
    times = {k: [] for k in keys}
    for r in range(args.rounds):
        shift = r % len(keys)
        order = keys[shift:] + keys[:shift]
        for k in keys:
            times[k].append([])
        for _ in range(args.steps):
            for key in order:
                t0 = time.perf_counter()
                runs[key]()
                times[key][-1].append(time.perf_counter() - t0)
        print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return times


def breakdown(name: str, args, data) -> list[tuple]:
    """Median ms of forward, forward+gradient and full step, BN-only, seed vs bnlib."""
    x, y = data
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rows = []
    fns = {}
    for variant in ("seed", "bnlib"):
        model = make_variant(name, variant, args.xla)

        @tf.function(jit_compile=args.xla)
        def forward(xb, model=model):
            return model(xb, training=True)

        @tf.function(jit_compile=args.xla)
        def forward_backward(xb, yb, model=model):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True))
            return tape.gradient(loss, model.trainable_variables)

        fns[variant] = (model, forward, forward_backward)
        forward(x)
        forward_backward(x, y)
        model.train_on_batch(x, y)
    meas = {(v, part): [] for v in fns for part in ("fwd", "fwdbwd", "step")}
    for _ in range(max(2, args.rounds) * max(2, args.steps // 2)):
        for variant, (model, forward, forward_backward) in fns.items():
            for part in ("fwd", "fwdbwd", "step"):
                t0 = time.perf_counter()
                if part == "fwd":
                    forward(x).numpy()
                elif part == "fwdbwd":
                    forward_backward(x, y)[0].numpy()
                else:
                    model.train_on_batch(x, y)
                meas[(variant, part)].append((time.perf_counter() - t0) * 1000)
    for variant in fns:
        fwd = statistics.median(meas[(variant, "fwd")])
        fb = statistics.median(meas[(variant, "fwdbwd")])
        step = statistics.median(meas[(variant, "step")])
        rows.append((LABELS[variant], fwd, fb - fwd, step - fb, step))

    # One BN layer, forward + backward, on a ResNet stage-1 sized activation.
    shape = (args.batch, 32, 32, 16)
    xb = tf.random.normal(shape)
    layer_ms = {}
    layers = {"keras": keras.layers.BatchNormalization(momentum=0.9), "bnlib": BatchNorm(momentum=0.9)}
    steps = {}
    for key, layer in layers.items():
        layer.build(shape)

        @tf.function(jit_compile=args.xla)
        def bn_step(t, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(t)
                out = layer(t, training=True)
                loss = tf.reduce_sum(out * out)
            return tape.gradient(loss, [t, layer.gamma, layer.beta])

        bn_step(xb)
        steps[key] = bn_step
        layer_ms[key] = []
    for _ in range(5):
        for key, fn in steps.items():
            t0 = time.perf_counter()
            for _ in range(10):
                out = fn(xb)
            out[0].numpy()
            layer_ms[key].append((time.perf_counter() - t0) / 10 * 1000)
    layer_row = {k: statistics.median(v) for k, v in layer_ms.items()}
    return rows, layer_row


# ----------------------------------------------------------------------------------------------
# report


def machine_info(args) -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpus = tf.config.list_physical_devices("GPU")
    lines = [
        f"- machine: {cpu}; {os.cpu_count()} logical cores ({usable} usable); "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}; "
        f"bfloat16 hardware: {bfloat16_hardware()}",
        f"- TensorFlow {tf.__version__}, Keras {keras.__version__}, backend {keras.backend.backend()}, "
        f"GPUs: {len(gpus)}; intra/inter-op threads: "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}/"
        f"{tf.config.threading.get_inter_op_parallelism_threads() or 'default'}; oneDNN CPU kernels: "
        f"{'on' if onednn_enabled() else 'off'} (TF_ENABLE_ONEDNN_OPTS=0/1 to compare)",
        f"- XLA (jit_compile): {'on' if args.xla else 'off'}; batch {args.batch}; "
        f"{args.rounds} rounds x {args.steps} steps per variant; random 32x32x3 data",
    ]
    if TORCH_VARIANTS.keys() & set(args.variants):
        import torch

        lines.append(f"- PyTorch {torch.__version__}, eager, {torch.get_num_threads()} threads, "
                     f"{args.torch_format} memory format, oneDNN (mkldnn) "
                     f"{'on' if torch.backends.mkldnn.enabled else 'off'}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    keras.utils.set_random_seed(0)
    x = tf.random.normal((args.batch, 32, 32, 3))
    y = tf.random.uniform((args.batch,), 0, 10, dtype=tf.int64)

    pipeline = None
    pipe_stats = None
    if not args.no_pipeline:
        print("building tf.data pipeline ...", file=sys.stderr, flush=True)
        pipeline = make_pipeline(args.pipeline_images, args.batch)
        pipe_stats = time_pipeline(pipeline, args.batch)

    print("building and compiling models ...", file=sys.stderr, flush=True)
    runs, trainable, jit = {}, {}, {}
    fed_iter = iter(pipeline.repeat()) if "fed" in args.variants else None
    for name in args.models:
        for variant in args.variants:
            if variant == "fed" and name != args.models[0]:
                continue
            key = (name, variant)
            if variant in TORCH_VARIANTS:
                runs[key], trainable[key] = make_torch_step(name, variant, (x, y), args)
                jit[key] = "n/a (eager)"
                continue
            model = make_variant(name, variant, args.xla)
            if variant == "fed":
                runs[key] = lambda model=model: model.train_on_batch(*next(fed_iter))
            else:
                runs[key] = lambda model=model: model.train_on_batch(x, y)
            trainable[key] = count_params(model.trainable_variables)
            jit[key] = model.jit_compile
    for step in runs.values():  # warm-up: trace and compile, 2 steps each
        step()
        step()

    print("timing ...", file=sys.stderr, flush=True)
    times = run_rounds(runs, args)
    bd = breakdown(args.models[0], args, (x, y)) if args.breakdown else None

    out = ["## Training-step speed (train_on_batch)", ""]
    out += machine_info(args)
    out += ["", "| model | variant | trainable params | images/s (median) | min-max of round medians | "
            "ms/step (median) | jit_compile |",
            "|---|---|---:|---:|---:|---:|---|"]
    for (name, variant), per_round in times.items():
        steps = [t for rnd in per_round for t in rnd]
        round_ips = [args.batch / statistics.median(rnd) for rnd in per_round]
        out.append(
            f"| {name} | {LABELS[variant]} | {trainable[(name, variant)]:,} | "
            f"{args.batch / statistics.median(steps):.1f} | {min(round_ips):.1f}-{max(round_ips):.1f} | "
            f"{statistics.median(steps) * 1000:.1f} | {jit[(name, variant)]} |"
        )

    def ratio(name, num, den):
        if (name, num) not in times or (name, den) not in times:
            return None
        pairs = [(a, b) for ra, rb in zip(times[(name, num)], times[(name, den)]) for a, b in zip(ra, rb)]
        return statistics.median(a / b for a, b in pairs)

    def train_ips(name, variant="bnlib"):
        return args.batch / statistics.median(t for rnd in times[(name, variant)] for t in rnd)

    columns = [(header, num, den) for header, num, den in RATIOS
               if num in args.variants and den in args.variants]
    if columns:  # no table when the chosen variants form no pair (e.g. --variants bnlib)
        out += ["", "Ratios (medians over steps of the ratio of adjacent, paired steps):", "",
                "| model | " + " | ".join(header for header, _, _ in columns) + " |",
                "|---|" + "---:|" * len(columns)]
        for name in args.models:
            cells = [ratio(name, num, den) for _, num, den in columns]
            out.append(f"| {name} | " + " | ".join("n/a" if c is None else ratio_text(c) for c in cells) + " |")

    if pipe_stats:
        out += ["", f"Input pipeline (tf.data over {args.pipeline_images:,} random uint8 images: normalise, "
                "pad 4 + random crop, flip, shuffle, batch, prefetch; measured alone, one epoch):", "",
                "| pipeline images/s (epoch, incl. shuffle fill) | steady images/s | first batch s | "
                "model | BN-only training images/s (b) | pipeline / training | >= 5x? |",
                "|---:|---:|---:|---|---:|---:|---|"]
        for name in args.models:
            if (name, "bnlib") not in times:
                continue
            ips = train_ips(name)
            r = pipe_stats["epoch_img_s"] / ips
            out.append(
                f"| {pipe_stats['epoch_img_s']:.0f} | {pipe_stats['steady_img_s']:.0f} | "
                f"{pipe_stats['first_batch_s']:.2f} | {name} | {ips:.1f} | {r:.1f}x | "
                f"{'yes' if r >= 5 else 'NO'} |"
            )
        if (args.models[0], "fed") in times:
            fed = ratio(args.models[0], "fed", "bnlib")
            out.append("")
            out.append(f"Training fed by the pipeline vs a fixed batch ({args.models[0]}, BN-only): "
                       f"step time ratio {fed:.2f}x.")

    if bd:
        rows, layer_row = bd
        out += ["", f"BN-only step breakdown, {args.models[0]} (median ms per batch of {args.batch}; "
                "backward = forward+gradient - forward; optimizer = train_on_batch - forward+gradient):", "",
                "| variant | forward | backward | optimizer + overhead | train_on_batch |",
                "|---|---:|---:|---:|---:|"]
        for label, fwd, bwd, opt, step in rows:
            out.append(f"| {label} | {fwd:.1f} | {bwd:.1f} | {opt:.1f} | {step:.1f} |")
        out += ["", f"One BN layer, forward + backward on ({args.batch}, 32, 32, 16): "
                f"keras {layer_row['keras']:.2f} ms, bnlib {layer_row['bnlib']:.2f} ms "
                f"({layer_row['keras'] / layer_row['bnlib']:.2f}x)."]

    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out += ["", f"Peak RSS: {rss_mib:.0f} MiB; wall {time.perf_counter() - t_start:.0f} s, "
            f"process CPU {time.process_time() - cpu_start:.0f} s."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
