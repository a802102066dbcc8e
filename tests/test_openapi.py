"""The HTTP API against its own OpenAPI schema, on real servers on loopback: every status a response has is
declared for its operation (with the error body for errors) and the body conforms; a 405 names the allowed
methods; ``/docs`` and ``/redoc`` load nothing from elsewhere (their files come from the server, through the
Host and Origin checks of the API; they and the schema need no token, the routes do); and a bounded schemathesis
run over ``/openapi.json`` finds no server error and no response that the schema does not describe.

The larger schemathesis run: ``API_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/test_openapi.py -k
schemathesis`` (README "HTTP API")."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, REFERENCE, declared_body_answer
from reporting import report

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("fastapi_offline")
schemathesis = pytest.importorskip("schemathesis")

from mtvcrafter.motion import load_motion, save_motion  # noqa: E402
from mtvcrafter_server.api.docs import ASSETS, ASSETS_URL  # noqa: E402
from mtvcrafter_server.api.errors import COMMON_ERRORS  # noqa: E402
from mtvcrafter_server.local import local_server  # noqa: E402

TOKEN = "openapi-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: the server's environment: no token but the one a fixture gives, the CPU
ENV = {"MTVCRAFTER_TOKEN": "", "CUDA_VISIBLE_DEVICES": ""}
#: test cases per operation of the schemathesis run in the suite (the larger run sets API_FUZZ_EXAMPLES)
FUZZ_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "50"))
FUZZ_SEED = int(os.environ.get("API_FUZZ_SEED", "20261205"))


# -- servers -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory):
    """The default server: loopback, no token, no tokenizer."""
    folder = tmp_path_factory.mktemp("openapi-bare")
    with local_server(folder / "data", log=folder / "log", env=ENV) as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with a token, a (tiny, random) 4DMoT tokenizer, so that /v1/tokenize answers too, and the stand-in
    NLF model, so that /v1/extract reads what it is sent."""
    torch = pytest.importorskip("torch")
    from mtvcrafter.extract import write_standin_model
    from mtvcrafter.motion import NormStats
    from mtvcrafter.tokenizer import FourDMoT, MotionTokenizer, TokenizerConfig

    folder = tmp_path_factory.mktemp("openapi")
    torch.manual_seed(0)
    MotionTokenizer(FourDMoT(TokenizerConfig.tiny()).eval(), NormStats.official()).save_pretrained(folder / "4dmot")
    nlf = write_standin_model(folder / "nlf-standin.torchscript")
    env = {**ENV, "MTVCRAFTER_TOKEN": TOKEN}
    options = ("--tokenizer", str(folder / "4dmot"), "--nlf", str(nlf))
    with local_server(folder / "data", *options, log=folder / "log", env=env, token=TOKEN) as url:
        yield url


@pytest.fixture(scope="module")
def schema(bare_server) -> dict:
    response = httpx.get(f"{bare_server}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def motion_npz(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("openapi-motion") / "motion.npz"
    save_motion(load_motion(EXAMPLES / "sampled_data.pkl", clip=0).slice(0, 20), path)
    return path.read_bytes()


# -- checking a response against the schema ----------------------------------------------------------------


def media_type(response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip()


def check_declared(schema: dict, method: str, path: str, response, code: str | None = None) -> None:
    """``response`` to ``method path`` (a path of the schema) has a status the operation declares, a content
    type it declares for that status, a body that conforms (schemathesis' validation), and for an error the
    error body (with ``code`` when given)."""
    operation = schema["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path}: {status} is not declared: {response.text[:300]}"
    content = operation["responses"][status].get("content", {})
    assert media_type(response) in content, f"{method} {path} {status}: {media_type(response)} not in {list(content)}"
    response.request.read()  # a multipart request is a stream: schemathesis reads what was sent
    loaded = schemathesis.openapi.from_dict(schema)
    loaded[path][method.upper()].validate_response(response)  # raises on a body that does not conform
    if response.status_code >= 400:
        assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (method, path)
        error = response.json()["error"]
        assert error["message"] and set(error) <= {"code", "message", "field"}, error
        if code is not None:
            assert error["code"] == code, error


def declaring_a_huge_body(server: str, method: str, path: str):
    """The answer to a request that declares a terabyte body and sends none (httpx would not send it)."""
    response = declared_body_answer(server, method, path, {**AUTH, "Content-Length": 2**40})
    response.elapsed = datetime.timedelta(0)
    return response


def submit(url: str, motion: bytes, params: dict | None, headers: dict | None = None, **files):
    parts = {"motion": ("motion.npz", motion, "application/octet-stream"), "reference": ("ref.png", REFERENCE)}
    parts.update(files)
    data = {"params": json.dumps(params)} if params is not None else {}
    return httpx.post(f"{url}/v1/jobs", files=parts, data=data, headers=headers or {}, timeout=30)


# -- the docs pages ----------------------------------------------------------------------------------------

ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize(("page", "marker"), [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")])
def test_the_docs_pages_load_only_files_this_server_serves(bare_server, page, marker):
    response = httpx.get(bare_server + page, timeout=10)
    assert response.status_code == 200 and media_type(response) == "text/html"
    html = response.text
    # nothing from another host: no absolute or protocol-relative URL anywhere in the page
    assert not re.search(r"(https?:)?//[\w.-]+\.\w", html), re.findall(r"(?:https?:)?//[^\s\"'<>]+", html)
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assets = [u for u in urls if Path(u).suffix in ASSET_TYPES]
    assert assets and all(u.startswith(ASSETS_URL + "/") for u in assets), urls
    for url in assets:
        asset = httpx.get(bare_server + url, timeout=10)
        assert asset.status_code == 200, url
        assert media_type(asset) == ASSET_TYPES[Path(url).suffix], (url, asset.headers["content-type"])
        assert len(asset.content) > 1000, url
    scripts = b"".join(httpx.get(bare_server + u, timeout=10).content for u in assets if u.endswith(".js"))
    assert marker.encode() in scripts
    # the page reads the schema from this server
    assert re.search(r"""["']/openapi\.json["']""", html)


def test_every_docs_file_is_served_with_its_type(bare_server):
    for name, content_type in ASSETS.items():
        response = httpx.get(f"{bare_server}{ASSETS_URL}/{name}", timeout=10)
        assert response.status_code == 200 and response.headers["content-type"] == content_type, name
    missing = httpx.get(f"{bare_server}{ASSETS_URL}/..%2Fcore.py", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_the_docs_need_no_token_but_pass_through_the_other_request_checks(server):
    """On a server with a token: the pages, their files and the schema are read without it (a browser opening /docs
    cannot send it), still through the Host and Origin checks; the schema declares the bearer scheme (Swagger UI's
    Authorize button), and the routes still refuse a request without the token."""
    for path in (
        "/docs",
        "/redoc",
        f"{ASSETS_URL}/swagger-ui-bundle.js",
        f"{ASSETS_URL}/redoc.standalone.js",
        "/openapi.json",
    ):
        assert httpx.get(server + path, headers=AUTH, timeout=10).status_code == 200, path
        assert httpx.get(server + path, timeout=10).status_code == 200, path
        for headers in ({}, AUTH):
            rebound = httpx.get(server + path, headers={**headers, "Host": "evil.example"}, timeout=10)
            assert rebound.status_code == 421 and rebound.json()["error"]["code"] == "bad_host", path
            cross = httpx.get(server + path, headers={**headers, "Origin": "https://evil.example"}, timeout=10)
            assert cross.status_code == 403 and cross.json()["error"]["code"] == "cross_origin", path
    assert httpx.head(server + "/openapi.json", timeout=10).status_code == 200
    # reads only: anything else on those paths still needs the token
    for method, path in (("POST", "/docs"), ("POST", "/openapi.json"), ("PUT", f"{ASSETS_URL}/swagger-ui.css")):
        refused = httpx.request(method, server + path, timeout=10)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", (method, path)
    # the page's own requests (same origin) are let through
    port = server.rsplit(":", 1)[1]
    own = httpx.get(server + "/openapi.json", headers={"Origin": f"http://127.0.0.1:{port}"}, timeout=10)
    assert own.status_code == 200
    # what Swagger UI reads: the bearer scheme (its Authorize button) on every operation, which it then sends
    schema = own.json()
    (name, scheme), *others = schema["components"]["securitySchemes"].items()
    assert (name, scheme["type"], scheme["scheme"], others) == ("bearer", "http", "bearer", [])
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"bearer": []}], (method, path)
            url = server + path.replace("{job_id}", "0123")
            refused = httpx.request(method, url, timeout=10)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", (method, path)
            # the page's own request without the token (before Authorize) too
            refused = httpx.request(method, url, headers={"Origin": f"http://127.0.0.1:{port}"}, timeout=10)
            assert refused.status_code == 401, (method, path)


def test_without_the_docs_files_the_server_starts_and_the_pages_say_what_to_install(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from mtvcrafter_server.api import docs
    from mtvcrafter_server.app import create_app
    from mtvcrafter_server.settings import Settings

    monkeypatch.setattr(docs, "assets_folder", lambda: None)
    app = create_app(Settings(data_dir=tmp_path / "data", token=None))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for path in ("/docs", "/redoc", f"{ASSETS_URL}/swagger-ui.css"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.json()["error"]["code"] == "docs_unavailable"
            assert "pip install 'fastapi-offline" in response.json()["error"]["message"]
        assert client.get("/v1/health").status_code == 200


# -- 405 ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/jobs", "GET, POST"),
        ("DELETE", "/v1/jobs", "GET, POST"),
        ("POST", "/v1/health", "GET"),
        ("PATCH", "/v1/jobs/0123", "GET, DELETE"),
        ("POST", "/v1/jobs/0123/result", "GET"),
        ("DELETE", "/v1/jobs/0123/events", "GET"),
        ("GET", "/v1/tokenize", "POST"),
        ("POST", "/docs", "GET"),
        ("PUT", f"{ASSETS_URL}/swagger-ui.css", "GET"),
        ("POST", "/openapi.json", "GET, HEAD"),
    ],
)
def test_a_405_names_the_allowed_methods(bare_server, method, path, allow):
    response = httpx.request(method, bare_server + path, timeout=10)
    assert response.status_code == 405, response.text
    assert {m.strip() for m in response.headers["allow"].split(",")} == set(allow.split(", "))
    assert response.json()["error"]["code"] == "method_not_allowed"


# -- every status is declared ------------------------------------------------------------------------------


def test_the_error_body_is_one_component_and_every_error_status_uses_it(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert sorted(detail["required"]) == ["code", "message"] and set(detail["properties"]) == {
        "code",
        "message",
        "field",
    }
    assert detail["properties"]["field"]["type"] == "string"
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # FastAPI's own 422 body is not ours
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            statuses = {int(s) for s in operation["responses"]}
            assert set(COMMON_ERRORS) <= statuses, (method, path, statuses)
            for status, declared in operation["responses"].items():
                if int(status) >= 400 and (method, path, status) != ("get", "/v1/health", "503"):  # Health body
                    assert declared["content"] == {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    }, (method, path, status)


def test_refusals_of_the_request_checks_are_declared(server, schema):
    for method, path, url in [
        ("GET", "/v1/health", "/v1/health"),
        ("GET", "/v1/backends", "/v1/backends"),
        ("GET", "/v1/jobs", "/v1/jobs"),
        ("GET", "/v1/jobs/{job_id}", "/v1/jobs/0123"),
        ("DELETE", "/v1/jobs/{job_id}", "/v1/jobs/0123"),
        ("GET", "/v1/jobs/{job_id}/events", "/v1/jobs/0123/events"),
        ("GET", "/v1/jobs/{job_id}/result", "/v1/jobs/0123/result"),
        ("POST", "/v1/jobs", "/v1/jobs"),
        ("POST", "/v1/tokenize", "/v1/tokenize"),
        ("POST", "/v1/extract", "/v1/extract"),
    ]:
        check_declared(schema, method, path, httpx.request(method, server + url, timeout=10), "unauthorized")
        rebound = httpx.request(method, server + url, headers={**AUTH, "Host": "evil.example"}, timeout=10)
        check_declared(schema, method, path, rebound, "bad_host")
        cross = httpx.request(method, server + url, headers={**AUTH, "Sec-Fetch-Site": "cross-site"}, timeout=10)
        check_declared(schema, method, path, cross, "cross_origin")
        check_declared(schema, method, path, declaring_a_huge_body(server, method, url), "upload_too_large")


def test_errors_of_the_routes_are_declared(server, bare_server, schema, motion_npz):
    check_declared(
        schema, "GET", "/v1/jobs/{job_id}", httpx.get(f"{server}/v1/jobs/0123", headers=AUTH), "job_not_found"
    )
    check_declared(
        schema, "GET", "/v1/jobs", httpx.get(f"{server}/v1/jobs?limit=many", headers=AUTH), "invalid_request"
    )
    unavailable = submit(server, motion_npz, {"backend": "mvdit-7b"}, AUTH)
    check_declared(schema, "POST", "/v1/jobs", unavailable, "backend_unavailable")
    check_declared(schema, "POST", "/v1/jobs", submit(server, motion_npz, {"steps": -1}, AUTH), "invalid_params")
    pickled = submit(server, b"\x80\x04N.", None, AUTH)
    check_declared(schema, "POST", "/v1/jobs", pickled, "unsupported_motion")
    no_image = submit(server, motion_npz, None, AUTH, reference=("ref.png", b"not an image"))
    check_declared(schema, "POST", "/v1/jobs", no_image, "unsupported_image")
    missing = httpx.post(f"{server}/v1/jobs", headers=AUTH, files={"reference": ("ref.png", REFERENCE)})
    check_declared(schema, "POST", "/v1/jobs", missing, "invalid_request")
    broken = httpx.post(
        f"{server}/v1/jobs", headers={**AUTH, "Content-Type": "multipart/form-data; boundary=x"}, content=b"--y\r\n"
    )
    check_declared(schema, "POST", "/v1/jobs", broken)
    tokenize = httpx.post(f"{bare_server}/v1/tokenize", files={"motion": ("motion.npz", motion_npz)}, timeout=30)
    check_declared(schema, "POST", "/v1/tokenize", tokenize, "no_tokenizer")
    no_model = httpx.post(f"{bare_server}/v1/extract", files={"video": ("a.mp4", b"\0" * 64)}, timeout=30)
    check_declared(schema, "POST", "/v1/extract", no_model, "extract_unavailable")
    not_video = httpx.post(f"{server}/v1/extract", headers=AUTH, files={"video": ("a.mp4", b"text")}, timeout=30)
    check_declared(schema, "POST", "/v1/extract", not_video, "unsupported_video")
    bad_params = httpx.post(
        f"{server}/v1/extract", headers=AUTH, files={"video": ("a.mp4", b"text")}, data={"params": "[]"}, timeout=30
    )
    check_declared(schema, "POST", "/v1/extract", bad_params, "invalid_params")


def test_answers_of_a_job_from_submit_to_result_conform(server, schema, motion_npz):
    client = httpx.Client(base_url=server, headers=AUTH, timeout=30)
    check_declared(schema, "GET", "/v1/health", client.get("/v1/health"))
    check_declared(schema, "GET", "/v1/backends", client.get("/v1/backends"))
    tokenized = client.post("/v1/tokenize?reconstruction=true", files={"motion": ("motion.npz", motion_npz)})
    check_declared(schema, "POST", "/v1/tokenize", tokenized)
    assert tokenized.status_code == 200, tokenized.text
    submitted = submit(server, motion_npz, {"backend": "preview", "width": 64, "height": 64, "seed": 5}, AUTH)
    check_declared(schema, "POST", "/v1/jobs", submitted)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    early = client.get(f"/v1/jobs/{job_id}/result")
    if early.status_code != 200:  # still queued or running
        check_declared(schema, "GET", "/v1/jobs/{job_id}/result", early, "no_result")
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as events:
        events.read()
    check_declared(schema, "GET", "/v1/jobs/{job_id}/events", events)
    assert events.status_code == 200 and "event: succeeded" in events.text, events.text[-500:]
    resumed = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "1"})
    check_declared(schema, "GET", "/v1/jobs/{job_id}/events", resumed)
    assert "id: 1\n" not in resumed.text
    job = client.get(f"/v1/jobs/{job_id}")
    check_declared(schema, "GET", "/v1/jobs/{job_id}", job)
    assert job.json()["status"] == "succeeded", job.text
    video = client.get(f"/v1/jobs/{job_id}/result")
    check_declared(schema, "GET", "/v1/jobs/{job_id}/result", video)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    check_declared(schema, "GET", "/v1/jobs", client.get("/v1/jobs", params={"limit": 5, "status": "succeeded"}))
    check_declared(schema, "DELETE", "/v1/jobs/{job_id}", client.delete(f"/v1/jobs/{job_id}"))
    client.close()


# -- schemathesis ------------------------------------------------------------------------------------------


def test_schemathesis_finds_no_server_error_and_no_undeclared_answer(server, tmp_path, motion_npz):
    """Schemathesis' CLI over /openapi.json (examples, coverage, fuzzing and stateful phases), every check but
    two: ``positive_data_acceptance`` expects a 2xx for any upload the schema allows, and a schema cannot say
    which bytes are a valid motion .npz or image; ``use_after_free`` expects a 404 for a job after its
    DELETE, which cancels a job and keeps it (its state, its result) rather than removing it."""
    # a finished job, which the stateful phase finds in GET /v1/jobs and follows to the routes of one job
    submitted = submit(server, motion_npz, {"backend": "preview", "width": 64, "height": 64, "seed": 9}, AUTH)
    assert submitted.status_code == 202, submitted.text
    with httpx.stream("GET", f"{server}/v1/jobs/{submitted.json()['id']}/events", headers=AUTH, timeout=60) as events:
        assert "event: succeeded" in events.read().decode()
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server}/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance,use_after_free",
        "--max-examples",
        str(FUZZ_EXAMPLES),
        "--seed",
        str(FUZZ_SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    start = time.monotonic()
    # in its own folder: the CLI keeps a cache of what it found in the working directory
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - start
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12000:]
    generated = re.search(r"(\d+) generated", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert tested and int(tested.group(1)) == 10, output[-3000:]
    report(
        "HTTP API",
        f"schemathesis, {FUZZ_EXAMPLES} examples per operation, seed {FUZZ_SEED}: "
        f"{generated.group(1) if generated else '?'} test cases, no failure, {elapsed:.1f} s",
    )
