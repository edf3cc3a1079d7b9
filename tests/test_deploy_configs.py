"""Every config in configs/ loads through our schema and, as the Serve deploy config `stackserve serve-config`
writes for it, through Ray Serve's own deploy schema; its deployments are the ones the graph builder binds.
No Ray instance is started: building an application only binds deployments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve._private.build_app import build_app as ray_build_app  # what `serve build` / `serve deploy` run
from ray.serve.schema import ServeDeploySchema

from serve.cli import main as cli_main
from serve.config import ConfigError, load_config
from serve.deploy_config import deployment_name, deployment_options, serve_deploy_config
from serve.graph import build_app

ROOT = Path(__file__).resolve().parents[1]
STACK_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("serve_"))
SERVE_CONFIGS = sorted((ROOT / "configs").glob("serve_*.yaml"))


@pytest.mark.parametrize("path", STACK_CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_is_a_valid_serve_deploy_config(path, monkeypatch):
    cfg = load_config(path)
    assert cfg.models
    serve_file = serve_deploy_config(cfg)
    schema = ServeDeploySchema.model_validate(serve_file)  # Ray Serve's own validation of `serve deploy` input
    (app,) = schema.applications
    assert app.import_path == "serve.graph:build_app"

    # The Serve file names exactly the deployments the builder binds (Serve refuses overrides of unknown names),
    # with the same options, and its inline config rebuilds the same graph.
    monkeypatch.chdir(ROOT)
    built = ray_build_app(build_app(serve_file["applications"][0]["args"]), name=app.name)
    by_name = {d.name: d for d in built.deployments}
    assert set(by_name) == {d.name for d in app.deployments}
    for d in serve_file["applications"][0]["deployments"]:
        got = by_name[d["name"]]
        assert got.ray_actor_options == d["ray_actor_options"]
        assert got._deployment_config.max_ongoing_requests == d["max_ongoing_requests"]
        scaling = got._deployment_config.autoscaling_config
        if "autoscaling_config" in d:
            assert scaling is not None and scaling.max_replicas >= 1
            for key, value in d["autoscaling_config"].items():
                assert getattr(scaling, key) == value, (d["name"], key)
        else:
            assert scaling is None


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_serve_config_files_validate_and_build(path, monkeypatch):
    """Hand-written Ray Serve config files pass Serve's schema and their args build the graph."""
    data = yaml.safe_load(path.read_text())
    ServeDeploySchema.model_validate(data)
    monkeypatch.chdir(ROOT)
    for app in data["applications"]:
        assert app["import_path"] == "serve.graph:build_app"
        assert ray_build_app(build_app(app.get("args", {})), name=app["name"]).deployments


def test_gpu_configs_ask_for_gpus_and_scale_every_deployment():
    for name in ("gpu-node.yaml", "gpu-cluster.yaml"):
        cfg = load_config(ROOT / "configs" / name)
        opts = deployment_options(cfg)
        assert all("autoscaling_config" in o for o in opts.values()), name
        llms = [o for n, o in opts.items() if n.startswith("LLM:")]
        assert all(o["ray_actor_options"].get("num_gpus") or o.get("placement_group_bundles") for o in llms)
        vllm = [m for m in cfg.models if m.engine.type == "vllm"]
        assert vllm and all(o["autoscaling_config"]["target_ongoing_requests"] >= 1 for o in llms)
    cluster = load_config(ROOT / "configs" / "gpu-cluster.yaml")
    big = next(m for m in cluster.models if "70B" in m.model_id)
    assert big.engine.tensor_parallel_size == 8
    # the vLLM engine's placement group reaches the Serve options (and so the Serve deploy config)
    opts = deployment_options(cluster)[deployment_name(big.model_id)]
    assert len(opts["placement_group_bundles"]) == 8 and opts["placement_group_strategy"] == "STRICT_PACK"


def test_cli_writes_the_serve_config(tmp_path, capsys):
    out = tmp_path / "serve.yaml"
    assert cli_main(["serve-config", str(ROOT / "configs/local.yaml"), "-o", str(out), "--name", "demo"]) == 0
    data = yaml.safe_load(out.read_text())
    assert data["applications"][0]["name"] == "demo"
    assert data == {**serve_deploy_config(load_config(ROOT / "configs/local.yaml"), app_name="demo")}
    ServeDeploySchema.model_validate(data)
    assert cli_main(["serve-config", str(ROOT / "configs/local.yaml")]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == serve_deploy_config(load_config(ROOT / "configs/local.yaml"))


def test_cli_reports_a_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {model_id: m, source: /x, deployment: {autoscaling_config: {max_replicas: 0}}}\n")
    assert cli_main(["serve-config", str(bad)]) == 2
    assert "models.0.deployment.autoscaling_config.max_replicas" in capsys.readouterr().err


def test_inline_config_args_are_validated():
    with pytest.raises(ConfigError, match=r"args\.config: invalid config"):
        build_app({"config": {"models": [{"model_id": "m"}]}})
