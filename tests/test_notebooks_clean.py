"""Notebooks are committed without outputs, each with its title, Colab badge and setup cell."""
import json
import warnings
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
BADGE = "https://colab.research.google.com/github/only-batchnorm/only-batchnorm/blob/main/notebooks/{}"


def test_there_are_six_chapters():
    assert len(NOTEBOOKS) == 6, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_valid_notebook_format(path):
    """The file as committed, not as nbformat would repair it on reading: every cell has an id
    in format 4.5 and none in 4.4 (a cell added by hand easily breaks either)."""
    raw = nbformat.from_dict(json.loads(path.read_text(encoding="utf-8")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a missing cell id is only a warning, so far
        try:
            nbformat.validate(raw)
        except (nbformat.ValidationError, Warning) as error:
            pytest.fail(f"{path.name} (nbformat 4.{raw.nbformat_minor}) is not valid: "
                        f"{str(error).splitlines()[0]}; give every cell an id in 4.5, none in 4.4")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run jupyter nbconvert --clear-output --inplace"
    assert "widgets" not in notebook.metadata, f"{path.name}: widget state in metadata; clear it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_title_badge_and_setup(path):
    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# ")
    assert BADGE.format(path.name) in first.source, f"{path.name}: Colab badge must link to its own path"
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "notebook.profile()" in code
    setup = next(c.source for c in notebook.cells if c.cell_type == "code" and "google.colab" in c.source)
    statements = [line for line in setup.splitlines() if not line.lstrip().startswith("#")]
    assert any('"pip", "install"' in line for line in statements), "the Colab cell installs bnlib"
    assert not any("tensorflow" in line.lower() for line in statements), "never pin TensorFlow on Colab"
    assert any(c.cell_type == "markdown" and "Exercises" in c.source for c in notebook.cells)


FOLD_OVER = 25   # lines of logic (not blank, not comments)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_long_code_cells_fold_on_the_site(path):
    """A reader of the site follows the text, the tables and the figures; a code cell longer than
    FOLD_OVER lines of logic (loading and checking runs, asserting what the text claims) is tagged
    hide-input, which folds its code behind a toggle and leaves its outputs in view.  Short cells,
    the calls the text teaches, stay in view."""
    notebook = nbformat.read(path, as_version=4)
    wrong = []
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        logic = [line for line in cell.source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        folded = "hide-input" in cell.metadata.get("tags", [])
        if folded != (len(logic) > FOLD_OVER):
            wrong.append(f"cell {i} ({len(logic)} lines, {'folded' if folded else 'not folded'})")
    assert not wrong, (f"{path.name}: tag hide-input exactly the code cells over {FOLD_OVER} lines of "
                       f"logic: {', '.join(wrong)}")
