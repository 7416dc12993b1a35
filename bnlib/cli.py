"""Command line: ``python -m bnlib train|report|params``.  A thin face over the library."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .config import FIELD_HELP, PRESETS, RunConfig
from .names import canonical_name

EXAMPLES = """examples:
  python -m bnlib params resnet56                    # trainable parameters per freezing policy
  python -m bnlib train --preset smoke --data cifar10.npz --out runs/smoke
  python -m bnlib train --preset paper --model resnet110 --policy bn --out runs/r110-bn
  python -m bnlib report runs/                       # comparison table of every result found
"""


SHORT_FLAGS = {"data_path": ("--data", "PATH"), "output_dir": ("--out", "FOLDER")}
# Flags that only act with one optimizer or schedule: given with another, they would be ignored.
ONLY_WITH = {"momentum": ("optimizer", "sgd"), "lr_milestones": ("schedule", "step"),
             "lr_decay": ("schedule", "step")}


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    """One --option per RunConfig field (defaults come from the preset)."""
    for field in dataclasses.fields(RunConfig):
        flags = ["--" + field.name.replace("_", "-")]
        metavar = field.name.upper()
        if field.name in SHORT_FLAGS:  # one option, two spellings
            short, metavar = SHORT_FLAGS[field.name]
            flags.insert(0, short)
        text = FIELD_HELP.get(field.name)
        kind = str(field.type).removesuffix(" | None")
        if kind == "bool":
            parser.add_argument(*flags, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=text)
        elif field.name == "lr_milestones":
            parser.add_argument(*flags, dest=field.name, type=int, nargs="*", default=None, metavar="EPOCH",
                                help=text)
        else:
            parser.add_argument(*flags, dest=field.name, type={"int": int, "float": float}.get(kind, str),
                                default=None, metavar=metavar, help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bnlib",
        description="Train only the BatchNorm layers of CIFAR ResNets (Frankle et al., ICLR 2021), "
                    "and compare the results.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train one network and save its result",
        description="Train one network. Start from a preset and override any field; the result "
                    "(metrics, γ/β, provenance) is saved in --out, which also holds the checkpoints: "
                    "re-run the same command to resume after an interruption.",
        epilog=f"presets: {', '.join(PRESETS)}. Data: --data PATH or $BNLIB_CIFAR10 "
               "(a .npz, a cifar-10-batches-py folder or the official tarball); otherwise Keras downloads it.")
    train.add_argument("--preset", default="cpu", choices=list(PRESETS),
                       help="starting point: paper (160 epochs, SGD), article (Adam, batch 1024), "
                            "cpu (minutes), smoke (seconds); default cpu")
    train.add_argument("--overwrite", action="store_true",
                       help="discard a different run's checkpoint in --out instead of refusing")
    train.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    _config_arguments(train)

    report = commands.add_parser("report", help="print a comparison table of saved results",
                                 description="Print one row per result (folders are searched "
                                             "recursively), with the paper's figures beside them.")
    report.add_argument("paths", nargs="+", metavar="RESULTS", help="result folders or roots")
    report.add_argument("--threshold", type=float, default=0.05, help="|γ| threshold (default 0.05)")
    report.add_argument("--csv", help="also write the table to this CSV file")
    report.add_argument("--markdown", action="store_true",
                        help="print the table as Markdown (for a README or a book page)")

    params = commands.add_parser("params", help="count parameters of a model for every policy",
                                 description="Trainable / frozen / BN-statistics counts per policy.")
    params.add_argument("model", help="e.g. resnet20, resnet866, wrn14-2, vgg16, keras-resnet50")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "report": _report, "params": _params}[args.command](args)
    except ValueError as error:  # bad input: one line naming the fix, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from .training import DivergenceError

        if not isinstance(error, DivergenceError):
            raise
        print(f"error: {error}", file=sys.stderr)  # what to change is in the message
        return 1


def _train(args) -> int:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if "lr_milestones" in overrides:
        overrides["lr_milestones"] = tuple(overrides["lr_milestones"])
    config = RunConfig.preset(args.preset, **overrides)
    for name, (field, value) in ONLY_WITH.items():
        if name in overrides and getattr(config, field) != value:
            raise ValueError(f"--{name.replace('_', '-')} only acts with --{field} {value}, and this run's "
                             f"{field} is {getattr(config, field)}; drop it or add --{field} {value}.")
    from .data import locate

    locate(config.dataset, config.data_path)  # a missing data path: one line, before TensorFlow
    from .training import train  # TensorFlow loads here, once the configuration and data path are valid

    result = train(config, verbose=0 if args.quiet else 2, overwrite=args.overwrite)
    print(f"{config.label}: test accuracy {result.test_accuracy:.4f} on "
          f"{result.provenance['data']['description']}"
          + (f"; saved in {result.path}" if result.path else ""))
    return 0


def _report(args) -> int:
    import pandas as pd

    from . import analysis, results

    found, names = [], []
    for path in args.paths:
        root = Path(path).parent if Path(path).is_file() else Path(path)  # a result.json: its folder
        loaded = results.load_all(root)
        found += loaded
        names += [(root, _run_name(result.path, root)) for result in loaded]
    plain = [name for _, name in names]
    if len(set(plain)) < len(plain):  # e.g. runs/seed0 and runs/seed1 with the same subfolders
        plain = [f"{root.resolve().name}/{name}" for root, name in names]
    names = plain
    if not found:
        raise ValueError(f"No result.json under {', '.join(args.paths)}; train with --out first.")
    table = analysis.comparison_table(found, args.threshold)
    # Rows named by folder: run names repeat across experiments (every seed of chapter 6's
    # experiments has a "full, 8 ep."), folders do not.  Names that say more than their folder's
    # name stay, as a column.
    if any(result.label != Path(result.path).name for result in found):
        table.insert(0, "name", table.index)
    table.index = pd.Index(names, name="run")
    if args.markdown:
        print(table.to_markdown(floatfmt=".3g"))
    else:
        with pd.option_context("display.max_columns", None, "display.width", 200,
                               "display.max_colwidth", 40):
            print(table.to_string())
    print(f"\npaper: {analysis.PAPER_CITATION}")
    if args.csv:
        table.to_csv(args.csv)
    return 0


def _run_name(folder: str, root: Path) -> str:
    """A result's folder relative to the path the user named (its own name if that is the folder)."""
    relative = Path(folder).resolve().relative_to(root.resolve())
    return relative.as_posix() if relative.parts else Path(folder).name


def _params(args) -> int:
    canonical_name(args.model)  # a misspelt name fails before TensorFlow loads
    from . import freeze, models
    from .config import POLICIES

    model = models.build(args.model)
    print(f"{model.name}: {len(freeze.batchnorm_layers(model))} BatchNorm layers")
    print(f"{'policy':<10} {'trainable':>12} {'frozen':>12} {'BN statistics':>14} {'trainable %':>12}")
    for policy in POLICIES:
        report = freeze.parameter_report(freeze.apply_policy(model, policy))
        print(f"{policy:<10} {report['trainable']:>12,} {report['frozen']:>12,} "
              f"{report['statistics']:>14,} {100 * report['trainable_fraction']:>11.2f}%")
    return 0
