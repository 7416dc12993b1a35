"""The suite's own summary: seconds per notebook, printed after every run (tests/conftest.py)."""
from types import SimpleNamespace

from conftest import seconds_per_file


def report(nodeid, duration):
    return SimpleNamespace(nodeid=nodeid, duration=duration)


def test_seconds_per_notebook_sums_setup_cells_and_teardown():
    reports = [report("notebooks/01_a.ipynb::Cell 0", 5.0),   # setup: the kernel starts
               report("notebooks/01_a.ipynb::Cell 0", 1.5),
               report("notebooks/01_a.ipynb::Cell 1", 2.0),
               report("notebooks/02_b.ipynb::Cell 0", 3.0),
               report("tests/test_train.py::test_fit", 9.0)]
    assert seconds_per_file(reports) == {"notebooks/01_a.ipynb": 8.5, "notebooks/02_b.ipynb": 3.0}


def test_seconds_per_file_by_suffix():
    reports = [report("tests/test_site.py::test_pages", 300.0), report("notebooks/01_a.ipynb::Cell 0", 1.0)]
    assert seconds_per_file(reports, suffix="test_site.py") == {"tests/test_site.py": 300.0}
