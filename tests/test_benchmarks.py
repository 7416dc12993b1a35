"""The benchmark scripts keep working: a tiny run of bench_step, and the PyTorch twin's shape."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_step  # noqa: E402

from bnlib import freeze, models  # noqa: E402


def test_bench_step_prints_the_table_and_ratios(capsys):
    bench_step.main(["--models", "resnet8", "--rounds", "1", "--steps", "1", "--batch", "8",
                     "--pipeline-images", "64", "--variants", "seed,bnlib,full", "--breakdown"])
    out = capsys.readouterr().out
    assert "| resnet8 | (a) keras BN-only (seed article) |" in out
    assert "| resnet8 | (b) bnlib BN-only |" in out
    assert "| resnet8 | (c) bnlib full |" in out
    assert "bnlib BN-only speed-up over seed article" in out
    assert "PyTorch" not in out  # columns appear only for variants that ran
    assert "Peak RSS" in out and "pipeline / training" in out and "One BN layer" in out


def test_bench_step_times_bfloat16_variants(capsys):
    bench_step.main(["--models", "resnet8", "--rounds", "1", "--steps", "1", "--batch", "8",
                     "--no-pipeline", "--variants", "bnlib,bnlib-bf16,full-bf16"])
    out = capsys.readouterr().out
    assert "| resnet8 | (b) in mixed bfloat16 |" in out and "| resnet8 | (c) in mixed bfloat16 |" in out
    assert "bfloat16 effect on BN-only" in out and "BN-only / full step time in bfloat16" in out
    assert "bfloat16 effect on full" not in out      # (c) in float32 did not run
    assert bench_step.keras.mixed_precision.global_policy().name == "float32"   # put back


def test_bench_step_times_float16_variants(capsys):
    bench_step.main(["--models", "resnet8", "--rounds", "1", "--steps", "1", "--batch", "8",
                     "--no-pipeline", "--variants", "bnlib,bnlib-fp16,full-fp16"])
    out = capsys.readouterr().out
    assert "| resnet8 | (b) in mixed float16 |" in out and "| resnet8 | (c) in mixed float16 |" in out
    assert "float16 effect on BN-only" in out and "bfloat16" not in out.split("Ratios")[1]
    model = bench_step.make_variant("resnet8", "bnlib-fp16", xla=False)
    assert model.layers[1].compute_dtype == "float16" and model.optimizer.__class__.__name__ == "LossScaleOptimizer"
    assert bench_step.keras.mixed_precision.global_policy().name == "float32"   # put back


def test_small_ratios_keep_their_digits():
    assert [bench_step.ratio_text(r) for r in (1.834, 0.55, 0.003973)] == ["1.83x", "0.55x", "0.004x"]


def test_bench_step_leaves_out_the_ratio_table_without_a_pair(capsys):
    bench_step.main(["--models", "resnet8", "--rounds", "1", "--steps", "1", "--batch", "8",
                     "--no-pipeline", "--variants", "bnlib"])
    out = capsys.readouterr().out
    assert "| resnet8 | (b) bnlib BN-only |" in out
    assert "Ratios" not in out


def test_bench_step_rejects_an_unknown_variant(capsys):
    with pytest.raises(SystemExit):
        bench_step.parse_args(["--variants", "bnlib,fast"])
    assert "unknown variants ['fast']" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "wrn14-2"])
def test_pytorch_twin_has_bnlib_parameter_counts(name):
    pytest.importorskip("torch", reason="optional: the PyTorch comparison needs a PyTorch CPU build")
    import torch_resnet

    model = models.build(name)
    total = sum(int(v.numpy().size) for v in model.trainable_variables)
    freeze.apply_policy(model, "bn")
    bn_only = sum(int(v.numpy().size) for v in model.trainable_variables)
    assert torch_resnet.parameter_count(torch_resnet.build(name, "all")) == total
    twin = torch_resnet.build(name, "bn")
    assert torch_resnet.parameter_count(twin) == total
    assert torch_resnet.parameter_count(twin, trainable_only=True) == bn_only
