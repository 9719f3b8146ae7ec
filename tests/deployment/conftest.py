"""Fixtures of the deployment tier: the service user the real server runs as (see ``deployment_support``)."""

from __future__ import annotations

import pwd
from collections.abc import Iterator

import pytest
from deployment_support import service_user, traverse_granted


@pytest.fixture(scope="session")
def service_account() -> Iterator[pwd.struct_passwd]:
    """The ordinary user of this tier's servers, able to start the venv's interpreter for the session."""
    user = service_user()
    with traverse_granted(user):
        yield user
