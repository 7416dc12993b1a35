"""The committed results in results/ are what scripts/run_experiments.py produces, and stay small.

The book draws these files, so they must be regenerable with one command: every committed run is
an experiment of the script, trained with exactly the script's configuration, and every experiment
of the script has its committed result.  Each is labelled with the data it used.
"""
import importlib.util
import json
from pathlib import Path

import pytest

import bnlib
from bnlib import beyond

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"


def load_script():
    spec = importlib.util.spec_from_file_location("run_experiments", REPO / "scripts" / "run_experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = load_script()
MACHINE_FIELDS = {"output_dir"}  # where the run was written: differs between clones
SINGLE_RUN_FOLDERS = sorted({folder for folder, _ in SCRIPT.EXPERIMENTS.values()})


def committed_runs(folder):
    return sorted(path.parent for path in (RESULTS / folder).rglob("result.json"))


def test_every_single_run_result_has_the_scripts_configuration():
    committed = {path.name: path for folder in SINGLE_RUN_FOLDERS for path in committed_runs(folder)}
    unknown = sorted(set(committed) - set(SCRIPT.EXPERIMENTS))
    assert not unknown, f"results without an experiment in scripts/run_experiments.py: {unknown}"
    missing = sorted(set(SCRIPT.EXPERIMENTS) - set(committed))
    assert not missing, f"experiments without a committed result: {missing}; run them and commit"
    for name, (folder, overrides) in SCRIPT.EXPERIMENTS.items():
        assert committed[name].parent.name == folder, name
        expected = bnlib.RunConfig.preset("cpu", name=name, output_dir="x", **overrides).to_dict()
        trained = bnlib.load_result(committed[name]).config
        differing = {key for key in expected if key not in MACHINE_FIELDS
                     and json.dumps(expected[key]) != json.dumps(trained.get(key))}
        assert not differing, f"{name}: trained with other {sorted(differing)} than the script says"


def test_every_beyond_experiment_has_all_its_runs():
    committed = sorted(path.name for path in (RESULTS / "cpu-beyond").iterdir() if path.is_dir())
    assert committed == sorted(SCRIPT.BEYOND)
    for name, (experiment, seed) in SCRIPT.BEYOND.items():
        runs = {path.relative_to(RESULTS / "cpu-beyond" / name).as_posix()
                for path in committed_runs(Path("cpu-beyond") / name)}
        expected = (set(beyond.WARM_START_RUNS) if experiment == "warm-start"
                    else {subfolder for subfolder, _ in beyond.TRANSFER_RUNS.values()} | {beyond.SOURCE_RUN})
        assert runs == expected, name
        for run in runs:
            result = bnlib.load_result(RESULTS / "cpu-beyond" / name / run)
            assert (result.config["model"], result.config["seed"]) == ("resnet14", seed), (name, run)
            # Runs that continued another network say so: analysis.rebuild_model must refuse them.
            continued = run.startswith("fine-tune-") or run == "bn-then-full"
            assert (result.provenance.get("initial_model") == "given") == continued, (name, run)


@pytest.mark.parametrize("folder", [*SINGLE_RUN_FOLDERS, "cpu-beyond"])
def test_every_result_names_its_data_and_hardware(folder):
    for path in committed_runs(folder):
        provenance = bnlib.load_result(path).provenance
        assert "JPEG-q75" in provenance["data"]["description"], path  # the lossy offline copy, said so
        assert provenance["device"].startswith("CPU") and provenance["tensorflow"], path


def test_results_stay_small_and_hold_no_weights():
    files = [path for path in RESULTS.rglob("*") if path.is_file()]
    assert not [p for p in files if p.suffix in (".h5", ".keras", ".ckpt") or "backup" in p.parts]
    assert sum(p.stat().st_size for p in files) < 8 * 2**20, "results/ is meant to stay a few MB"
