"""`rag serve --engine ray`: the same FastAPI app, deployed with Ray Serve.

Each replica is a Ray actor that builds the app with `rag.serve.app.app_from_env` (the factory the
multi-worker uvicorn server uses) from the settings handed to it in `$RAG_SERVE_SETTINGS`, and runs
the app's lifespan (models and the index load before the replica takes requests). Ray Serve's proxy
listens on `host:port` and spreads requests over the replicas; with `autoscaling` the number of
replicas follows the load between `min_replicas` and `max_replicas` (Ray Serve's
`autoscaling_config`). `num_gpus` per replica puts each on its own GPU (a vLLM generator with
`tensor_parallel_size` > 1 needs that many; see docs/scaling.md).

Paths (the index, the API keys file) are made absolute, and every node that runs a replica must
see them (one machine, or shared storage). API keys in `$RAG_API_KEYS` are passed to the replicas.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError
from rag.distributed import import_ray
from rag.serve.settings import API_KEYS_ENV, SETTINGS_ENV, ServerSettings

__all__ = ["RayServeSettings", "build_application", "serve_with_ray"]

logger = logging.getLogger(__name__)

DEPLOYMENT = "rag"


@dataclass(frozen=True)
class RayServeSettings:
    """How the app is deployed: fixed `replicas`, or `autoscaling` between `min_replicas` and `max_replicas`.

    `target_ongoing_requests` is the load per replica the autoscaler aims at; `num_cpus` and
    `num_gpus` are each replica's resources; `address` is the cluster to join (None: $RAY_ADDRESS,
    else a new local cluster).
    """

    replicas: int = 1
    autoscaling: bool = False
    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing_requests: float = 2.0
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    address: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.replicas < 1:
            problems.append(f"replicas must be at least 1, got {self.replicas}")
        if self.min_replicas < 0 or self.max_replicas < max(1, self.min_replicas):
            problems.append(
                f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got {self.min_replicas} "
                f"and {self.max_replicas}"
            )
        if self.target_ongoing_requests <= 0:
            problems.append(f"target_ongoing_requests must be > 0, got {self.target_ongoing_requests}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            problems.append(f"num_cpus and num_gpus must be >= 0, got {self.num_cpus} and {self.num_gpus}")
        if problems:
            raise ConfigError("Ray Serve settings: " + "; ".join(problems))

    def deployment_options(self) -> dict[str, Any]:
        """The keyword arguments of `serve.deployment` these settings stand for (without the runtime env)."""
        options: dict[str, Any] = {
            "name": DEPLOYMENT,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
        }
        if self.autoscaling:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.replicas
        return options


def build_application(settings: ServerSettings, deploy: RayServeSettings) -> Any:
    """The Ray Serve application (a bound deployment) serving `settings`; ready for `serve.run`."""
    import_ray("rag serve --engine ray")
    try:
        from ray import serve
    except ImportError as exc:  # ray without its serve extra
        from rag.core.errors import MissingDependencyError

        raise MissingDependencyError("ray[serve]", "ray", "rag serve --engine ray") from exc
    from rag.serve.app import app_from_env

    absolute = dataclasses.replace(
        settings,
        index=Path(settings.index).resolve() if settings.index is not None else None,
        collections=tuple(dataclasses.replace(c, index=c.index.resolve()) for c in settings.collections),
        api_keys_file=str(Path(settings.api_keys_file).resolve()) if settings.api_keys_file else None,
    )
    env = {SETTINGS_ENV: absolute.to_json(), **deploy.env}
    if os.environ.get(API_KEYS_ENV):
        env[API_KEYS_ENV] = os.environ[API_KEYS_ENV]
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "RAG_EMBEDDING_CACHE"):
        if name in os.environ:
            env.setdefault(name, os.environ[name])
    options = deploy.deployment_options()
    options["ray_actor_options"]["runtime_env"] = {"env_vars": env}
    deployment: Any = serve.deployment(serve.ingress(app_from_env)(), **options)
    return deployment.bind()


def serve_with_ray(settings: ServerSettings, deploy: RayServeSettings, port: int = 8000, blocking: bool = True) -> None:
    """Deploy the app on Ray Serve at `settings.host:port`; with `blocking`, serve until interrupted."""
    ray = import_ray("rag serve --engine ray")
    application = build_application(settings, deploy)
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=deploy.address, include_dashboard=False, logging_level=logging.WARNING)
    serve.start(http_options={"host": settings.host, "port": port})
    logger.info("deploying rag on Ray Serve at http://%s:%d", settings.host, port)
    serve.run(application, name=DEPLOYMENT, route_prefix="/", blocking=blocking)
