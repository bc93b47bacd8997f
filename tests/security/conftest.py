"""One secured Kafka (``gridhub infra up --secure`` style) for the whole session of tests/security.

Its own temporary run dir and port, stopped at the end (only this broker); the
shared dev servers are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gridhub.infra.secure import SecureInfra
from gridhub.settings import Settings
from secure_helpers import AGENCIES, free_port_pair


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureInfra]:
    settings = Settings(run_dir=tmp_path_factory.mktemp("secure-kafka"))
    manager = SecureInfra(settings, AGENCIES, port=free_port_pair(), classpath_settings=Settings())
    try:
        manager.up()
        yield manager
    finally:
        manager.down()  # this broker only
