"""aegis reaching a Docker engine over TCP, with TLS (DOCKER_HOST=tcp://...,
DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) and without: ``aegis doctor`` finds it, and a daemon
supervises a container there through the sweep and the event stream. The certificates are
made here with the openssl command; nothing is downloaded."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.containers import FAILS, NEVER_HEALTHY
from tests.support.daemons import Spawner, daemon_env
from tests.support.engines import PrivateEngine
from tests.support.ports import free_port
from tests.support.required import skip_or_fail
from tests.support.rows import event_counts
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

# No TLS: empty values, which docker-py reads as unset (the suite's own environment may
# set them)
NO_TLS = {"DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""}


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and a
    second CA that signed neither. The client's files are named as DOCKER_CERT_PATH wants
    them (ca.pem, cert.pem, key.pem), in their own folder."""
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl command is missing")
    client = folder / "client"
    client.mkdir(parents=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *key, "-keyout", f"{ca}-key.pem", "-out", f"{ca}.pem",
                "-days", "2", "-subj", f"/CN=aegis test {ca}", cwd=folder)
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n"
                                       "extendedKeyUsage=serverAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, cert, keyfile in (
            ("server", "/CN=127.0.0.1", "server-cert.pem", "server-key.pem"),
            ("client", "/CN=aegis", "client/cert.pem", "client/key.pem")):
        openssl("req", *key, "-keyout", keyfile, "-out", f"{name}.csr", "-subj", subject,
                cwd=folder)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", f"{name}.ext",
                cwd=folder)
    shutil.copy(folder / "ca.pem", client / "ca.pem")
    return {"ca": folder / "ca.pem", "server_cert": folder / "server-cert.pem",
            "server_key": folder / "server-key.pem", "client": client,
            "other_ca": folder / "other-ca.pem"}


def doctor_docker(env: dict[str, str]) -> dict[str, str]:
    result = run_cli("doctor", "--json", env=env, timeout=120)
    checks = {check["check"]: check for check in json.loads(result.stdout)}
    return dict(checks["docker"])


def start_failing_container(engine: PrivateEngine) -> None:
    # through the engine's unix socket: the test's own way in
    engine.run(NEVER_HEALTHY, name="failing", healthcheck=FAILS)


def supervise_through(aegis_env: dict[str, str], spawn: Spawner, docker: dict[str, str]
                      ) -> None:
    """A daemon on ``docker`` gives the failing container strike 1, from its event stream
    and its sweeps, and never finds the engine away."""
    url = aegis_env["AEGIS_DATABASE_URL"]
    daemon = spawn(daemon_env(aegis_env, AEGIS_JOB_MODULES="", AEGIS_REMEDIATION="on",
                              AEGIS_LOG_LEVEL="info",
                              AEGIS_JOB__DOCKER_HEALTH_CHECK__EVERY="1s", **docker))
    wait_for(lambda: rows(url, "SELECT 1 FROM episodic_memory WHERE event_type = "
                               "'container_unhealthy' AND details->>'container' = 'failing'"),
             timeout_s=60, what="strike 1 for the container behind DOCKER_HOST")
    wait_for(lambda: rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'docker_health_check' "
                               "AND (result->>'supervised')::int = 1"),
             timeout_s=30, what="a sweep that saw it")
    wait_for(lambda: spawn.logged(daemon, "docker_stream_connected"), what="the event stream")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    assert event_counts(url)["docker_unavailable"] == 0
    assert rows(url, "SELECT phase, strikes FROM containers WHERE name = 'failing'") == [
        {"phase": "striking", "strikes": 1}]


def test_aegis_reaches_an_engine_over_tcp_with_tls(
        idle_engine: PrivateEngine, aegis_env: dict[str, str], spawn: Spawner,
        tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    port = free_port()
    idle_engine.args = ("--host", f"tcp://127.0.0.1:{port}", "--tlsverify",
                        "--tlscacert", str(certs["ca"]), "--tlscert", str(certs["server_cert"]),
                        "--tlskey", str(certs["server_key"]))
    idle_engine.start()
    start_failing_container(idle_engine)
    host = f"tcp://127.0.0.1:{port}"
    # a CA bundle for everything else must not replace the engine's own CA
    tls = {"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": str(certs["client"]),
           "REQUESTS_CA_BUNDLE": str(certs["other_ca"]),
           "CURL_CA_BUNDLE": str(certs["other_ca"])}

    docker = doctor_docker({**aegis_env, **tls})
    assert docker["status"] == "ok", docker
    assert f"at {host} over TLS, 1 containers" in docker["detail"], docker

    # the engine takes no client without a certificate, and doctor says what is missing
    plain = doctor_docker({**aegis_env, "DOCKER_HOST": host, **NO_TLS})
    assert plain["status"] == "fail", plain
    assert "DOCKER_CERT_PATH" in plain["hint"], plain

    supervise_through(aegis_env, spawn, tls)


def test_aegis_reaches_an_engine_over_plain_tcp(
        idle_engine: PrivateEngine, aegis_env: dict[str, str], spawn: Spawner) -> None:
    port = free_port()
    idle_engine.args = ("--host", f"tcp://127.0.0.1:{port}", "--tls=false")
    idle_engine.start()
    start_failing_container(idle_engine)
    plain = {"DOCKER_HOST": f"tcp://127.0.0.1:{port}", **NO_TLS}

    docker = doctor_docker({**aegis_env, **plain})
    assert docker["status"] == "ok", docker
    assert f"at tcp://127.0.0.1:{port}, 1 containers" in docker["detail"], docker

    supervise_through(aegis_env, spawn, plain)
