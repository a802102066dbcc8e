"""The server's layout as a client and an operator see it: the OpenAPI schema (one tag per resource, the
bearer scheme, the response models) from a real server on loopback, and the settings read from the
environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("pydantic_settings")

from mtvcrafter_server import Settings  # noqa: E402
from mtvcrafter_server.api.models import BackendInfo, Health, JobInfo, TokenizeResult  # noqa: E402
from mtvcrafter_server.local import local_server  # noqa: E402

TOKEN = "from-the-environment"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

ROUTES = {
    ("get", "/v1/health"): "health",
    ("get", "/v1/backends"): "backends",
    ("post", "/v1/jobs"): "jobs",
    ("get", "/v1/jobs"): "jobs",
    ("get", "/v1/jobs/{job_id}"): "jobs",
    ("delete", "/v1/jobs/{job_id}"): "jobs",
    ("get", "/v1/jobs/{job_id}/result"): "jobs",
    ("get", "/v1/jobs/{job_id}/events"): "jobs",
    ("post", "/v1/tokenize"): "tokenize",
    ("post", "/v1/extract"): "extract",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mtvcrafter serve`` on loopback whose token comes from MTVCRAFTER_TOKEN only (no --token)."""
    folder = tmp_path_factory.mktemp("server-api")
    with local_server(folder / "data", log=folder / "log", env={"MTVCRAFTER_TOKEN": TOKEN}, token=TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def schema(server):
    response = httpx.get(f"{server}/openapi.json", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_token_from_the_environment_is_required(server):
    refused = httpx.get(f"{server}/v1/health", timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    for path in ("/v1/backends", "/v1/jobs"):
        assert httpx.get(f"{server}{path}", timeout=10).status_code == 401, path
    # the docs and the schema are read without it (a browser opening /docs cannot send it)
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert httpx.get(f"{server}{path}", timeout=10).status_code == 200, path
    ok = httpx.get(f"{server}/v1/health", headers=AUTH, timeout=10)
    assert ok.status_code == 200 and ok.json()["status"] == "ok"


def test_each_router_lists_its_paths_under_its_tag(schema):
    operations = {(method, path): op["tags"] for path, ops in schema["paths"].items() for method, op in ops.items()}
    assert operations == {route: [tag] for route, tag in ROUTES.items()}


def test_the_bearer_scheme_is_declared_and_every_route_references_it(schema):
    schemes = schema["components"]["securitySchemes"]
    assert len(schemes) == 1
    (name, scheme), *_ = schemes.items()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for (method, path), _tag in ROUTES.items():
        assert schema["paths"][path][method]["security"] == [{name: []}], (method, path)


def _response_schema(schema, method: str, path: str, status: str) -> dict:
    return schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]


def test_response_models_come_from_the_pydantic_models(schema):
    ref = "#/components/schemas/"
    assert _response_schema(schema, "get", "/v1/health", "200") == {"$ref": ref + "Health"}
    assert _response_schema(schema, "get", "/v1/backends", "200")["items"] == {"$ref": ref + "BackendInfo"}
    assert _response_schema(schema, "post", "/v1/jobs", "202") == {"$ref": ref + "JobInfo"}
    assert _response_schema(schema, "get", "/v1/jobs", "200")["items"] == {"$ref": ref + "JobInfo"}
    assert _response_schema(schema, "get", "/v1/jobs/{job_id}", "200") == {"$ref": ref + "JobInfo"}
    assert _response_schema(schema, "delete", "/v1/jobs/{job_id}", "200") == {"$ref": ref + "JobInfo"}
    assert _response_schema(schema, "post", "/v1/tokenize", "200") == {"$ref": ref + "TokenizeResult"}
    assert _response_schema(schema, "post", "/v1/extract", "202") == {"$ref": ref + "JobInfo"}
    components = schema["components"]["schemas"]
    for model in (Health, BackendInfo, JobInfo, TokenizeResult):
        declared = model.model_json_schema(mode="serialization")
        assert set(components[model.__name__]["properties"]) == set(model.model_fields), model.__name__
        assert sorted(components[model.__name__]["required"]) == sorted(declared["required"]), model.__name__


# -- settings ----------------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("TOKEN", "DATA_DIR", "MODEL_DIR", "HOST", "PORT", "MAX_FRAMES"):
        monkeypatch.delenv(f"MTVCRAFTER_{name}", raising=False)
    return monkeypatch


def test_settings_read_the_environment(clean_env, tmp_path):
    clean_env.setenv("MTVCRAFTER_TOKEN", "t0ken")
    clean_env.setenv("MTVCRAFTER_DATA_DIR", str(tmp_path / "data"))
    clean_env.setenv("MTVCRAFTER_MODEL_DIR", str(tmp_path / "models"))
    clean_env.setenv("MTVCRAFTER_MAX_FRAMES", "120")
    settings = Settings()
    assert settings.token == "t0ken"
    assert settings.data_dir == tmp_path / "data"
    assert settings.model_dir == tmp_path / "models"
    assert settings.max_frames == 120
    assert (settings.host, settings.port, settings.backend) == ("127.0.0.1", 8765, None)


def test_a_keyword_beats_the_environment(clean_env, tmp_path):
    clean_env.setenv("MTVCRAFTER_TOKEN", "t0ken")
    clean_env.setenv("MTVCRAFTER_DATA_DIR", str(tmp_path / "env-data"))
    settings = Settings(token="keyword", data_dir=tmp_path / "kw-data")
    assert settings.token == "keyword" and settings.data_dir == tmp_path / "kw-data"


def test_settings_take_every_server_option_by_keyword(clean_env, tmp_path):
    settings = Settings(
        host="127.0.0.1",
        port=9000,
        data_dir=str(tmp_path / "d"),
        backend="preview",
        model_dir=tmp_path / "m",
        base_model_dir=tmp_path / "b",
        tokenizer=tmp_path / "t",
        token="x",
        allowed_origins=["http://example.test"],
        max_upload_bytes=10,
        max_frames=11,
        max_image_pixels=12,
        max_output_side=13,
        device="cpu",
    )
    assert settings.data_dir == tmp_path / "d" and isinstance(settings.data_dir, Path)
    assert settings.allowed_origins == ["http://example.test"]
    assert (settings.max_upload_bytes, settings.max_frames, settings.max_image_pixels) == (10, 11, 12)


def test_a_public_host_without_a_token_is_refused_in_one_line(clean_env):
    with pytest.raises(ValueError) as refused:
        Settings(host="0.0.0.0")
    assert type(refused.value) is ValueError  # not pydantic's multi-line ValidationError
    assert str(refused.value) == (
        "binding 0.0.0.0 exposes the server beyond this machine: set an access token "
        "(--token or MTVCRAFTER_TOKEN); clients then send 'Authorization: Bearer <token>'"
    )
    clean_env.setenv("MTVCRAFTER_HOST", "192.168.1.20")
    with pytest.raises(ValueError, match="binding 192.168.1.20 exposes the server"):
        Settings()


def test_a_token_from_the_environment_allows_a_public_host(clean_env):
    clean_env.setenv("MTVCRAFTER_TOKEN", "t0ken")
    assert Settings(host="0.0.0.0").token == "t0ken"
    assert Settings(host="localhost", token=None).token is None


def test_a_default_backend_the_registry_does_not_know_is_one_line_from_the_environment_too(clean_env, tmp_path):
    env = {**os.environ, "MTVCRAFTER_BACKEND": "mvdit-99b"}
    result = subprocess.run(
        [sys.executable, "-m", "mtvcrafter", "serve", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: backend: Input should be 'preview', 'tiny', 'tiny-17b', 'mvdit-7b' or 'mvdit-17b'"
    ]
