"""Regenerate every committed result in results/ with one command.

    BNLIB_CIFAR10=path/to/cifar10.npz python scripts/run_experiments.py [--only NAME ...] [--list]

Runs the `cpu` profile (bnlib.config.PRESETS["cpu"]: 10,000 training images, the full test set, 8
epochs, Adam 0.01 with cosine decay, augmentation) for every experiment of results/cpu/, one after
another, in the order of importance; then the longer runs of results/cpu-50k/ (all 50,000 training
images, 15 epochs, otherwise the same: BN-only ResNet-14, 20, 32, 56, 110 and WRN-14-2, each from two seeds, and WRN-14-4
from two seeds too; fully trained ResNet-14, 20, 32, 56 and 110, each from two seeds too; VGG-11,
without skip connections, BN-only and fully trained from two seeds too; and ResNet-20 with the
paper's three baselines (the random control, the output layer alone, BN with it) and with γ or β
alone, each from two seeds too, and β alone once more with every γ at 1, from two seeds; and ResNet-56
with the three baselines, from two seeds); then the paper's own recipe,
shortened, in results/cpu-sgd/ (SGD 0.1, momentum 0.9, weight decay 1e-4, step decays, all 50,000
images, 32 epochs, a fifth of the paper's 160, unless said: BN-only and fully trained ResNet-14, 20
and 32 from seeds 0 and 1, a ResNet-56 both ways from seed 0 and BN-only from seed 1, BN-only
ResNet-14 and 20 without the weight decay, a BN-only ResNet-14 from γ = 1, and a BN-only ResNet-14
at half the paper's length, 80 epochs); then the first 80 steps of that recipe for a
ResNet-866 in results/cpu-deep/; then four of the longer runs in mixed bfloat16 in
results/cpu-bf16/; then chapter 6's experiments of results/cpu-beyond/ (bnlib.beyond:
BN-only warm-up, BN-only fine-tuning on a class split), each several runs of the `cpu` profile. Each
run checkpoints every epoch into its folder: re-running the command after an interruption resumes
the unfinished run and skips the finished ones. On this project's 2-core machines the data is the
JPEG-q75 offline copy of CIFAR-10 (see shared/data/README.md), and every result records that.
"""
import argparse
import sys
from pathlib import Path

import bnlib
from bnlib import beyond

ROOT = Path(__file__).resolve().parents[1] / "results"

# The seed article's recipe, scaled down (see keras-resnet50-bn-article below).
ARTICLE = dict(policy="bn", optimizer="adam", learning_rate=0.01, schedule="constant", augment=False,
               gamma_init="he_normal", batch_size=256)
# name -> RunConfig overrides on top of the `cpu` preset.  Same schedule for every run.
CPU = {
    "resnet14-bn": dict(model="resnet14", policy="bn"),
    "resnet20-bn": dict(model="resnet20", policy="bn"),
    "resnet20-all": dict(model="resnet20", policy="all"),
    "resnet20-output": dict(model="resnet20", policy="output"),
    "resnet14-bn-momentum-0.99": dict(model="resnet14", policy="bn", bn_momentum=0.99),
    # The momentum pair again under the seed article's constant learning rate, with a tenth of the
    # training images held out and scored in inference mode after every epoch, as the article did.
    "resnet14-bn-constant-val": dict(model="resnet14", policy="bn", schedule="constant", validation_split=0.1),
    "resnet14-bn-constant-val-momentum-0.99": dict(model="resnet14", policy="bn", schedule="constant",
                                                   validation_split=0.1, bn_momentum=0.99),
    "resnet32-bn": dict(model="resnet32", policy="bn"),
    "resnet20-random": dict(model="resnet20", policy="random"),
    "resnet14-all": dict(model="resnet14", policy="all"),
    "resnet20-bn+output": dict(model="resnet20", policy="bn+output"),
    "resnet20-bn-gamma-ones": dict(model="resnet20", policy="bn", gamma_init="ones"),
    # The seed article's setup, scaled down: Keras ResNet-50, BN-only, Adam 0.01 constant,
    # no augmentation, γ he_normal (batch 256 instead of 1024: 10,000 images give 40 steps/epoch).
    "keras-resnet50-bn-article": dict(model="keras-resnet50", **ARTICLE),
    "resnet56-bn": dict(model="resnet56", policy="bn"),
    "resnet32-all": dict(model="resnet32", policy="all"),
    "resnet56-all": dict(model="resnet56", policy="all"),
    "resnet110-bn": dict(model="resnet110", policy="bn"),
    "resnet110-all": dict(model="resnet110", policy="all"),
    # The seed article's deeper Keras ResNets, same scaled-down recipe: does depth pay there too?
    "keras-resnet101-bn-article": dict(model="keras-resnet101", **ARTICLE),
    "keras-resnet152-bn-article": dict(model="keras-resnet152", **ARTICLE),
}
# Does the paper's depth trend appear with more training?  Every training image (50,000) and
# 15 epochs: 9.3x the optimizer steps of the runs above, same optimizer and schedule shape.
LONGER = {"train_per_class": None, "epochs": 15}
CPU_50K = {
    "resnet14-bn-50k": dict(model="resnet14", policy="bn", **LONGER),
    "resnet32-bn-50k": dict(model="resnet32", policy="bn", **LONGER),
    "resnet56-bn-50k": dict(model="resnet56", policy="bn", **LONGER),
    "resnet20-bn-50k": dict(model="resnet20", policy="bn", **LONGER),
    # Full training on the same longer schedule: is the BN-only gap to it still wide?
    "resnet20-all-50k": dict(model="resnet20", policy="all", **LONGER),
    # ... and at a second depth: does the gap narrow with depth, as in the paper?
    "resnet14-all-50k": dict(model="resnet14", policy="all", **LONGER),
    # ... and at a third: the paper's recipe narrowed the gap from ResNet-20 to 32; does Adam too?
    "resnet32-all-50k": dict(model="resnet32", policy="all", **LONGER),
    # ... and at the deepest: does the gap keep narrowing from ResNet-32 to 56?
    "resnet56-all-50k": dict(model="resnet56", policy="all", **LONGER),
    # Wider instead of deeper: WRN-14-2 has about as many BN parameters as ResNet-32 (2,240 vs
    # 2,464).  The paper finds accuracy grows with BN parameters, faster with depth than width.
    "wrn14-2-bn-50k": dict(model="wrn14-2", policy="bn", **LONGER),
    # ... and from a second seed: seed 0's WRN-14-2 was only 2.5 points below ResNet-32.
    "wrn14-2-bn-50k-seed1": dict(model="wrn14-2", policy="bn", **LONGER, seed=1),
    # Second seeds at both ends of the BN-only depth series: is the 11-point rise from ResNet-14
    # to ResNet-56 far larger than what a seed moves either end?
    "resnet14-bn-50k-seed1": dict(model="resnet14", policy="bn", **LONGER, seed=1),
    "resnet56-bn-50k-seed1": dict(model="resnet56", policy="bn", **LONGER, seed=1),
    # One doubling deeper: after 8 short epochs ResNet-110 fell below ResNet-56 (35.7% vs 39.7%);
    # does the longer schedule, on which every step from ResNet-14 to 56 paid, lift it above?
    "resnet110-bn-50k": dict(model="resnet110", policy="bn", **LONGER),
    # The step from ResNet-56 to 110 (2.2 points) is only just above the largest move a second seed
    # made (1.9): is it the seed?
    "resnet110-bn-50k-seed1": dict(model="resnet110", policy="bn", **LONGER, seed=1),
    # Full training one doubling deeper: the gap to BN-only narrowed at every step from ResNet-14
    # to 56 (37.3 → 27.4 points); does it keep narrowing at ResNet-110?
    "resnet110-all-50k": dict(model="resnet110", policy="all", **LONGER),
    # Second seeds for the middle of the BN-only depth series, so that every depth from ResNet-14
    # to 110 has two: does each step still hold once a seed can move both of its ends?
    "resnet20-bn-50k-seed1": dict(model="resnet20", policy="bn", **LONGER, seed=1),
    "resnet32-bn-50k-seed1": dict(model="resnet32", policy="bn", **LONGER, seed=1),
    # ... and full training's own seed spread at ResNet-14, where the gap is widest: how far does a
    # seed move the fully trained network on this schedule?
    "resnet14-all-50k-seed1": dict(model="resnet14", policy="all", **LONGER, seed=1),
    # ... and at ResNet-20: does the first step in depth narrow the gap from seed 1 too?
    "resnet20-all-50k-seed1": dict(model="resnet20", policy="all", **LONGER, seed=1),
    # ... and at ResNet-32 and 56: seed 1 widened the gap at ResNet-14 and 20 by as much as one step
    # in depth narrows it; does the narrowing from ResNet-14 to 56 hold with seed 1 at both ends?
    "resnet32-all-50k-seed1": dict(model="resnet32", policy="all", **LONGER, seed=1),
    "resnet56-all-50k-seed1": dict(model="resnet56", policy="all", **LONGER, seed=1),
    # ... and at ResNet-110, the one depth where seed 0 alone says full training runs short of
    # epochs (its fit falls from ResNet-56 to 110) and where the gap is narrowest (23.2 points).
    "resnet110-all-50k-seed1": dict(model="resnet110", policy="all", **LONGER, seed=1),
    # Width's second doubling: WRN-14-4 has 4,480 BN parameters, within 5% of ResNet-56's 4,256.
    # Along depth the returns per doubling fell at ResNet-110; do width's fall too, and at about
    # the same budget, do 42 more layers or four times the width buy more?
    "wrn14-4-bn-50k": dict(model="wrn14-4", policy="bn", **LONGER),
    # ... and from seed 1, as every other BN-only run on this schedule: seed 1 moved WRN-14-2 by
    # 0.9 points and its lead over ResNet-14 by 2.9, so one seed cannot say whether width's return
    # holds from WRN-14-2 to 4 nor how WRN-14-4 ranks against ResNet-56 at about the same budget.
    "wrn14-4-bn-50k-seed1": dict(model="wrn14-4", policy="bn", **LONGER, seed=1),
    # How does a network without skip connections compare?  VGG-11 with BatchNorm (the official
    # code's VGG), no skip connections, 5,504 BN parameters, between ResNet-56's 4,256 and
    # ResNet-110's 8,288; it differs in depth, width and pooling too, so this compares
    # architectures.  Trained BN-only and fully on the same recipe (chapter 5).
    "vgg11-bn-50k": dict(model="vgg11", policy="bn", **LONGER),
    "vgg11-all-50k": dict(model="vgg11", policy="all", **LONGER),
    # ... and from seed 1, as every ResNet and WRN on this schedule: seed 0's BN-only shortfall
    # against ResNet-56 (2.1-2.9 points) was at the edge of what a seed moves a network (2.0).
    "vgg11-bn-50k-seed1": dict(model="vgg11", policy="bn", **LONGER, seed=1),
    "vgg11-all-50k-seed1": dict(model="vgg11", policy="all", **LONGER, seed=1),
    # The paper's baselines on this schedule, at ResNet-20 (seed 0): the random control (two
    # randomly chosen convolution weights per channel trained instead of γ and β: as many
    # parameters, spread over the kernels), the classifier alone, and BN with the classifier.
    # After 8 short epochs BN-only led the control by 16 points; does that hold with 9.3x the steps?
    "resnet20-random-50k": dict(model="resnet20", policy="random", **LONGER),
    "resnet20-output-50k": dict(model="resnet20", policy="output", **LONGER),
    "resnet20-bn+output-50k": dict(model="resnet20", policy="bn+output", **LONGER),
    # ... and γ and β apart, each half of BN's budget: which of the two does the work?  γ alone
    # can rescale a feature, flip it and scale it away, but every ReLU then cuts at zero; β alone
    # can move the cut but not rescale, and the features keep their random initial γ.
    "resnet20-gamma-50k": dict(model="resnet20", policy="gamma", **LONGER),
    "resnet20-beta-50k": dict(model="resnet20", policy="beta", **LONGER),
    # ... and from seed 1: γ alone led β alone by 5.3 points from seed 0; is that more than a seed?
    "resnet20-gamma-50k-seed1": dict(model="resnet20", policy="gamma", **LONGER, seed=1),
    "resnet20-beta-50k-seed1": dict(model="resnet20", policy="beta", **LONGER, seed=1),
    # ... and β alone with every γ at 1 instead of its random U[0, 1) start: is β alone behind γ
    # alone because it cannot rescale, or because a quarter of its features start scaled below 0.25?
    "resnet20-beta-50k-gamma-ones": dict(model="resnet20", policy="beta", **LONGER, gamma_init="ones"),
    "resnet20-beta-50k-gamma-ones-seed1": dict(model="resnet20", policy="beta", **LONGER, gamma_init="ones", seed=1),
    # ... and the baselines from seed 1 too, so that every gap chapter 5 reads on this schedule
    # stands beside how far a seed moves the same run.
    "resnet20-output-50k-seed1": dict(model="resnet20", policy="output", **LONGER, seed=1),
    "resnet20-bn+output-50k-seed1": dict(model="resnet20", policy="bn+output", **LONGER, seed=1),
    "resnet20-random-50k-seed1": dict(model="resnet20", policy="random", **LONGER, seed=1),
    # The baselines at a second depth, ResNet-56 (seed 0): BN-only gained 8 points from ResNet-20
    # to 56; does the random control (as many parameters, spread over the kernels) gain as much
    # from depth, and does the classifier alone on deeper random features?
    "resnet56-output-50k": dict(model="resnet56", policy="output", **LONGER),
    "resnet56-random-50k": dict(model="resnet56", policy="random", **LONGER),
    "resnet56-output-50k-seed1": dict(model="resnet56", policy="output", **LONGER, seed=1),
    "resnet56-random-50k-seed1": dict(model="resnet56", policy="random", **LONGER, seed=1),
    # ... and BN with the output layer at ResNet-56, from both seeds: at ResNet-20 the trained
    # classifier added 3 points to BN-only; does it still add once the random features are deeper?
    "resnet56-bn+output-50k": dict(model="resnet56", policy="bn+output", **LONGER),
    "resnet56-bn+output-50k-seed1": dict(model="resnet56", policy="bn+output", **LONGER, seed=1),
}
# The paper's own recipe at a fifth of its length: SGD, lr 0.1, momentum 0.9, weight decay 1e-4
# (added to the gradient, as the paper's PyTorch code does), lr ÷10 at half and three quarters of
# the epochs (80 and 120 of 160 in the paper), every training image, 32 epochs.  Does it switch off
# the paper's "third of the features", and is weight decay what does it?  Same run without it.
PAPER_RECIPE = dict(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
                    lr_milestones=(16, 24), lr_decay=0.1, train_per_class=None, epochs=32)
CPU_SGD = {
    "resnet14-bn-sgd": dict(model="resnet14", policy="bn", **PAPER_RECIPE),
    "resnet14-bn-sgd-no-wd": dict(model="resnet14", policy="bn", **{**PAPER_RECIPE, "weight_decay": 0.0}),
    # Another seed (other random convolutions, initial γ and data order): how much of what the
    # other runs differ by could the seed alone explain?
    "resnet14-bn-sgd-seed1": dict(model="resnet14", policy="bn", **{**PAPER_RECIPE, "seed": 1}),
    # One step deeper on the same recipe: does depth pay, and does it switch more features off?
    "resnet20-bn-sgd": dict(model="resnet20", policy="bn", **PAPER_RECIPE),
    # ... and a third depth: does the step from ResNet-14 to ResNet-20 continue to ResNet-32?
    "resnet32-bn-sgd": dict(model="resnet32", policy="bn", **PAPER_RECIPE),
    # ... and ResNet-20's own second seed: is the step from ResNet-14 larger than a seed moves it?
    "resnet20-bn-sgd-seed1": dict(model="resnet20", policy="bn", **{**PAPER_RECIPE, "seed": 1}),
    # The paper's comparison on the paper's recipe: the same ResNet-14 trained fully.
    "resnet14-all-sgd": dict(model="resnet14", policy="all", **PAPER_RECIPE),
    # ... and one step deeper: does the gap narrow from ResNet-14 to ResNet-20 on this recipe too?
    "resnet20-all-sgd": dict(model="resnet20", policy="all", **PAPER_RECIPE),
    # ... and at ResNet-32, the third BN-only depth: does the gap keep its size?
    "resnet32-all-sgd": dict(model="resnet32", policy="all", **PAPER_RECIPE),
    # ... and a second seed of the fully trained ResNet-20: how far does a seed move full training?
    "resnet20-all-sgd-seed1": dict(model="resnet20", policy="all", **{**PAPER_RECIPE, "seed": 1}),
    # ... and ResNet-32's second BN-only seed: does the step from ResNet-20 hold for another seed?
    "resnet32-bn-sgd-seed1": dict(model="resnet32", policy="bn", **{**PAPER_RECIPE, "seed": 1}),
    # ... and the fully trained ResNet-32's second seed: is the gap at ResNet-32 more than a seed?
    "resnet32-all-sgd-seed1": dict(model="resnet32", policy="all", **{**PAPER_RECIPE, "seed": 1}),
    # ResNet-20 without weight decay: does weight decay switch more γ off at a second depth too?
    "resnet20-bn-sgd-no-wd": dict(model="resnet20", policy="bn", **{**PAPER_RECIPE, "weight_decay": 0.0}),
    # ... and the fully trained ResNet-14's second seed, which completes a second seed of both
    # policies at every depth: does the gap narrow with depth within each seed?
    "resnet14-all-sgd-seed1": dict(model="resnet14", policy="all", **{**PAPER_RECIPE, "seed": 1}),
    # Does longer training switch more features off and close the gap to the paper's ≈48%?  The
    # same recipe at half the paper's length (80 epochs, decays at 40 and 60): 2.5x the steps.
    "resnet14-bn-sgd-80": dict(model="resnet14", policy="bn",
                               **{**PAPER_RECIPE, "epochs": 80, "lr_milestones": (40, 60)}),
    # ... and the depth series on this recipe one step further, to ResNet-56: does the rise from
    # ResNet-14 to 32 continue, as it does on the longer Adam schedule?
    "resnet56-bn-sgd": dict(model="resnet56", policy="bn", **PAPER_RECIPE),
    # ... and the same ResNet-56 trained fully: does the gap keep narrowing at the fourth depth?
    "resnet56-all-sgd": dict(model="resnet56", policy="all", **PAPER_RECIPE),
    # ... and BN-only ResNet-56's second seed, which completes a second BN-only seed at every depth:
    # is the step from ResNet-32 to ResNet-56 more than a seed moves it?
    "resnet56-bn-sgd-seed1": dict(model="resnet56", policy="bn", **{**PAPER_RECIPE, "seed": 1}),
    # Does weight decay switch γ off that start far from zero?  The ResNet-14 of resnet14-bn-sgd
    # with every γ starting at 1 (Keras' default) instead of the paper's U[0, 1): none starts
    # below 0.05, so every near-zero γ at the end is training's doing.
    "resnet14-bn-sgd-gamma-ones": dict(model="resnet14", policy="bn", gamma_init="ones", **PAPER_RECIPE),
}
# Does the paper's recipe stay finite for the deepest network?  A TensorFlow reproduction was
# reported to have seen BN-only ResNet-218/434/866 diverge.  ResNet-866 took 12-14 s per step here
# (batch 128, sharing the 2 cores with another run), so this is the start of training only: the paper's optimizer at its full learning rate of 0.1
# (the first decay comes at epoch 80), 80 steps (2,560 images x 4 epochs), 1,000 test images; once
# with the paper's uniform γ and once with Keras' default γ = 1.
DEEP_START = dict(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
                  lr_milestones=(80, 120), lr_decay=0.1, train_per_class=256, test_per_class=100, epochs=4)
CPU_DEEP = {
    "resnet866-bn-sgd-start": dict(model="resnet866", policy="bn", **DEEP_START),
    "resnet866-bn-sgd-start-gamma-ones": dict(model="resnet866", policy="bn", gamma_init="ones", **DEEP_START),
}
# 16-bit compute on a CPU: the Intel Xeons this project ran on have AMX, matrix units for bfloat16,
# and benchmarks/bench_step.py times a training step 1.6-1.85x faster in mixed bfloat16.  Does a whole
# run go that much faster, and does it reach the same accuracy?  Twins of ResNet-20 BN-only and fully
# trained on the longer schedule, from both seeds (their float32 twins of seed 1 ran on the same Xeon
# model, those of seed 0 on the AMD EPYC machines, so only seed 1's epoch times compare, and loosely).
CPU_BF16 = {
    "resnet20-bn-50k-bf16": dict(model="resnet20", policy="bn", **LONGER, precision="mixed_bfloat16"),
    "resnet20-all-50k-bf16": dict(model="resnet20", policy="all", **LONGER, precision="mixed_bfloat16"),
    "resnet20-bn-50k-seed1-bf16": dict(model="resnet20", policy="bn", **LONGER, seed=1, precision="mixed_bfloat16"),
    "resnet20-all-50k-seed1-bf16": dict(model="resnet20", policy="all", **LONGER, seed=1, precision="mixed_bfloat16"),
}
# results/<folder>/<name>: every single-run experiment, in the order they run.
EXPERIMENTS = {name: (folder, overrides)
               for folder, group in (("cpu", CPU), ("cpu-50k", CPU_50K), ("cpu-sgd", CPU_SGD),
                                     ("cpu-deep", CPU_DEEP), ("cpu-bf16", CPU_BF16))
               for name, overrides in group.items()}
# Chapter 6's questions (bnlib.beyond), answered in the `cpu` profile with a ResNet-14, twice
# (seeds 0 and 1: initialisation, data order, augmentation): each experiment is several runs, saved
# under results/cpu-beyond/<name>/<run>/ and resumable run by run.  The BN-only warm-up takes a
# quarter of the epochs (2 of 8); the transfer experiment trains on classes 0-4 and adapts to
# classes 5-9, 1,000 training images per class as in every cpu run.  name -> (experiment, seed)
BEYOND = {f"{experiment}-resnet14{'-seed1' if seed else ''}": (experiment, seed)
          for seed in (0, 1) for experiment in ("warm-start", "transfer")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these experiments")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--root", default=str(ROOT),
                        help="folder for cpu/, cpu-50k/, cpu-sgd/, cpu-deep/, cpu-bf16/ and cpu-beyond/ (default: the repository's results/)")
    parser.add_argument("--work", default=str(ROOT.parent / ".cache" / "beyond"),
                        help="scratch folder for the transfer experiment's class-split archives and "
                             "source weights, kept out of the results (default: .cache/beyond)")
    args = parser.parse_args(argv)
    names = args.only or [*EXPERIMENTS, *BEYOND]
    unknown = [n for n in names if n not in EXPERIMENTS and n not in BEYOND]
    if unknown:
        sys.exit(f"Unknown experiment(s) {unknown}; see --list.")
    for name in names:
        if name in BEYOND:
            run_beyond(name, args)
            continue
        folder, overrides = EXPERIMENTS[name]
        output_dir = str(Path(args.root) / folder / name)
        config = bnlib.RunConfig.preset("cpu", name=name, output_dir=output_dir, **overrides)
        if args.list:
            print(name, config.to_json().replace("\n", " "))
            continue
        print(f"=== {name}", flush=True)
        result = bnlib.train(config)
        print(f"=== {name}: test accuracy {result.test_accuracy:.4f} "
              f"({result.provenance['data']['description']})", flush=True)


def run_beyond(name, args):
    experiment, seed = BEYOND[name]
    config = bnlib.RunConfig.preset("cpu", model="resnet14", name=name, seed=seed)
    if args.list:
        print(name, f"(bnlib.beyond, {experiment})", config.to_json().replace("\n", " "))
        return
    print(f"=== {name}", flush=True)
    output_dir = Path(args.root) / "cpu-beyond" / name
    if experiment == "warm-start":
        outcome = beyond.warm_start(config, bn_epochs=config.epochs // 4, verbose=2, output_dir=output_dir)
    else:
        outcome = beyond.transfer(config, Path(args.work) / name, verbose=2, output_dir=output_dir)
    for result in outcome.results:
        print(f"=== {name}: {result.label}: test accuracy {result.test_accuracy:.4f}", flush=True)


if __name__ == "__main__":
    main()
