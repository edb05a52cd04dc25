"""The local microVM host of ``serve``: its agent's port."""

from __future__ import annotations

import socket

from slices_blueprint.hosts.local import local_agent_port
from tests.conftest import make_settings


def test_local_agent_takes_the_next_port_or_else_any_free_one(tmp_path, database_url: str) -> None:
    with socket.socket() as holder:  # something already listens on the service's port + 1
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        settings = make_settings(tmp_path, database_url, taken - 1)
        other = local_agent_port(settings)
        assert other not in (taken, 0)
        with socket.socket() as check:
            check.bind(("127.0.0.1", other))  # really free
    assert local_agent_port(settings) == taken  # free again: the predictable choice
