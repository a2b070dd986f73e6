"""`rag serve --engine ray`: the FastAPI app deployed with Ray Serve on a local 2-CPU cluster."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from rag.core.errors import ConfigError
from rag.serve.settings import ServerSettings
from tests.serve.fakes import ECHO, answer_pipeline
from tests.serve.helpers import build_index

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from rag.distributed.ray_serve import RayServeSettings, serve_with_ray  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    serve.shutdown()
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ray_serve_deploys_the_app_with_autoscaling(tmp_path: Path) -> None:
    index = build_index(tmp_path, answer_pipeline())
    settings = ServerSettings(index=index, allowed=(ECHO,), api_keys=(), max_top_k=3)
    deploy = RayServeSettings(
        autoscaling=True, min_replicas=1, max_replicas=2, num_cpus=0.5, env={"PYTHONPATH": str(ROOT)}
    )
    port = free_port()
    serve_with_ray(settings, deploy, port=port, blocking=False)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the Ray Serve deployment did not become ready"
        time.sleep(0.5)
    response = httpx.post(url + "/v1/query", json={"query": "What do sea otters eat?"}, timeout=30)
    assert response.status_code == 200
    assert response.json()["hits"][0]["source"]["path"] == "otters.md"
    answer = httpx.post(url + "/v1/answer", json={"question": "Why does bread dough rise?"}, timeout=30).json()
    assert answer["hits"][0]["source"]["path"] == "bread.md" and answer["answer"]
    assert httpx.post(url + "/v1/query", json={"query": "x", "top_k": 4}, timeout=30).status_code == 422
    deployment = serve.status().applications["rag"].deployments["rag"]
    assert deployment.status == "HEALTHY"


def test_ray_serve_settings() -> None:
    options = RayServeSettings(replicas=3, num_gpus=1).deployment_options()
    assert options["num_replicas"] == 3 and options["ray_actor_options"]["num_gpus"] == 1
    assert "autoscaling_config" not in options
    auto = RayServeSettings(autoscaling=True, min_replicas=0, max_replicas=8, target_ongoing_requests=4)
    assert auto.deployment_options()["autoscaling_config"] == {
        "min_replicas": 0,
        "max_replicas": 8,
        "target_ongoing_requests": 4,
    }
    with pytest.raises(ConfigError, match="min_replicas <= max_replicas"):
        RayServeSettings(autoscaling=True, min_replicas=3, max_replicas=2)
