"""Shared pytest configuration."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "site: builds the Jupyter Book and checks every page in headless Chromium "
        "(slow; run with -m site)",
    )
