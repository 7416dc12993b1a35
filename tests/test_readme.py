"""The README's table of results quotes the committed result files, and lists every one of them.

The table is written by hand, with descriptive run names; each row names its result folder, so
these tests can hold every figure in it to the file it came from.
"""
import re
from pathlib import Path

import pytest

import bnlib
from bnlib import analysis

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
HEADER = "| run | result folder | trainable parameters | test accuracy |"


def table_rows(readme: str) -> dict:
    """Result folder -> (parameters, accuracy, fraction) cells of the README's results table."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[1]:  # section rows (in italics) name no folder
            folder = cells[1].strip("`")
            assert folder not in rows, f"{folder} is in the README's table twice"
            rows[folder] = cells[2:]
    return rows


def quoted(result) -> list[str]:
    """The cells the README should show for a result, formatted as the table formats them."""
    accuracy = f"{100 * result.test_accuracy:.1f}%"
    fraction = (f"{analysis.fraction_below(result.all_gamma()):.3f} "
                f"({analysis.fraction_below(result.all_initial_gamma()):.3f})")
    return [f"{result.parameters['trainable']:,}", accuracy, fraction]


ROWS = table_rows((REPO / "README.md").read_text(encoding="utf-8"))
SINGLE_RUNS = sorted(path.parent.relative_to(RESULTS).as_posix() for path in RESULTS.rglob("result.json")
                     if path.relative_to(RESULTS).parts[0] != "cpu-beyond")  # chapter 6: its own table


def test_the_table_lists_every_single_run_result():
    assert sorted(ROWS) == SINGLE_RUNS, "add the new result's row to the README's results table"


def misquotes(folder: str, cells: list[str]) -> list[str]:
    """The README cells of a result's row that differ from the result file, with what it holds."""
    expected = quoted(bnlib.load_result(RESULTS / folder))
    found = [cells[0], re.match(r"[\d.]+%", cells[1]).group(), cells[2]]  # "9.9% (chance)" allowed
    # γ is not trained by the output-only and random policies: the README leaves that cell empty.
    checked = [0, 1] if cells[2] == "—" else [0, 1, 2]
    return [f"{folder}: README {found[i]!r}, result {expected[i]!r}" for i in checked if found[i] != expected[i]]


@pytest.mark.parametrize("folder", sorted(ROWS))
def test_each_row_quotes_its_result(folder):
    assert not misquotes(folder, ROWS[folder])


def test_a_misquoted_row_is_caught():
    readme = "\n".join([HEADER + " fraction |", "|---|---|---:|---:|---:|",
                        "| ResNet-14 BN-only | `cpu/resnet14-bn` | 1,120 | 38.4% | 0.084 (0.039) |", ""])
    assert misquotes("cpu/resnet14-bn", table_rows(readme)["cpu/resnet14-bn"]) == [
        "cpu/resnet14-bn: README '38.4%', result '37.4%'"]
