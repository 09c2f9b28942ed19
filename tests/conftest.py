"""
Test-session set-up shared by every test.
"""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tests use the checkout's code, whatever the working directory becomes.
if sys.path[0] != REPO:
    sys.path.insert(0, REPO)


@pytest.fixture(autouse=True, scope="session")
def _runInScratchDirectory(tmp_path_factory):
    """
    trial's C{TestCase.mktemp} makes paths relative to the working directory:
    run from a scratch directory so that tests never write into the checkout.
    """
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("work"))
    yield
    os.chdir(old)
