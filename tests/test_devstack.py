"""Tests of the local stack: the system services, the busybox base and the demo images.

They run against the real dockerd, Redis and PostgreSQL, which ``devstack.system``
starts if they are not running. Every container and volume made here carries the
label ``hostyard.test=1`` and is removed at the end of its test.
"""

import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator

import docker
import docker.errors
import psycopg
import pytest
import requests

from devstack import images, system
from devstack.__main__ import write_env_file
from devstack.images import (
    ALL_IMAGES,
    BROKEN_MESSAGE,
    DEMO_IMAGE_1_0,
    DEMO_IMAGE_1_1,
    DEMO_IMAGE_BROKEN,
    DEMO_PORT,
    DIGEST_LABEL,
    ensure_images,
)
from devstack.process import ManagedProcess, pid_alive

TEST_LABELS = {"hostyard.test": "1"}

# Number of polls for a container to start serving, 0.1 s apart.
READY_POLLS = 300


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    system.ensure_docker()
    client = system.docker_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def built_images(docker_client: docker.DockerClient) -> list[str]:
    return ensure_images(docker_client)


@pytest.fixture
def data_volume(docker_client: docker.DockerClient) -> Iterator[str]:
    volume = docker_client.volumes.create(labels=TEST_LABELS)
    yield volume.name
    volume.remove(force=True)


def run_demo(
    client: docker.DockerClient, image: str, volume: str, **environment: str
) -> docker.models.containers.Container:
    """Start ``image`` with the security settings customer containers get."""
    return client.containers.run(
        image,
        detach=True,
        labels=TEST_LABELS,
        environment=environment,
        volumes={volume: {"bind": images.DEMO_DATA_PATH, "mode": "rw"}},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        init=True,
        mem_limit="64m",
        pids_limit=32,
    )


def fetch(container: docker.models.containers.Container, path: str) -> requests.Response:
    """GET ``path`` from the container's bridge address once it serves."""
    container.reload()
    address = container.attrs["NetworkSettings"]["IPAddress"]
    url = f"http://{address}:{DEMO_PORT}{path}"
    for _ in range(READY_POLLS):
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.1)
    container.reload()
    pytest.fail(f"{url} never accepted a connection; status {container.status}")


def remove(container: docker.models.containers.Container) -> None:
    container.remove(force=True)


def test_system_services_respond() -> None:
    docker_status = system.ensure_docker()
    redis_status = system.ensure_redis()
    database_url = system.ensure_postgresql()

    assert docker_status.running
    assert redis_status.running
    assert system.redis_responds()
    assert database_url == "postgres://hostyard:hostyard@127.0.0.1:5432/hostyard"
    with psycopg.connect(database_url, connect_timeout=5) as connection:
        row = connection.execute("SELECT current_user, current_database()").fetchone()
    assert row == ("hostyard", "hostyard")


def test_postgresql_listens_on_loopback() -> None:
    addresses = {part.strip() for part in system.pg_listen_addresses().split(",")}

    assert addresses <= {"localhost", "127.0.0.1", "::1", ""}


def test_ensure_docker_unknown_host(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    socket_url = f"unix://{tmp_path}/missing.sock"
    monkeypatch.setenv("DOCKER_HOST", socket_url)

    with pytest.raises(system.SystemServiceError, match="does not respond") as raised:
        system.ensure_docker(tmp_path)

    assert socket_url in str(raised.value)
    assert not (tmp_path / "dockerd.pid").exists()


def test_owned_pid_ignores_reused_pid(tmp_path) -> None:
    # A pidfile naming a live process of another program must not be stopped.
    process = ManagedProcess(name="redis", argv=["redis-server"], state_dir=tmp_path)
    process.pidfile.write_text(f"{os.getpid()}\n")

    assert system.owned_pid(process) is None
    assert system.stop_owned(process) is None
    assert not process.pidfile.exists()


def test_stop_owned_stops_started_process(tmp_path) -> None:
    process = ManagedProcess(name="sleep", argv=["sleep", "300"], state_dir=tmp_path)
    pid = process.start(ready=lambda: True)

    assert system.owned_pid(process) == pid
    assert system.stop_owned(process) == pid
    assert not pid_alive(pid)
    assert not process.pidfile.exists()


def test_down_leaves_unowned_services(tmp_path) -> None:
    system.ensure_docker()
    system.ensure_redis()
    environment = {**os.environ, "HOSTYARD_RUN_DIR": str(tmp_path)}

    result = subprocess.run(
        [sys.executable, "-m", "devstack", "down"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )

    assert "docker      left" in result.stdout
    assert "redis       left" in result.stdout
    assert system.docker_responds(system.docker_host())
    assert system.redis_responds()


def test_env_file_quotes_values(tmp_path) -> None:
    path = write_env_file(tmp_path, {"A_URL": "redis://127.0.0.1:6379/0", "B_SECRET": "x y'z"})

    assert path.stat().st_mode & 0o777 == 0o600
    assert "export A_URL=redis://127.0.0.1:6379/0\n" in path.read_text()
    assert "export B_SECRET='x y'\"'\"'z'\n" in path.read_text()


def test_busybox_rootfs_layout() -> None:
    with tarfile.open(fileobj=io.BytesIO(images.busybox_rootfs())) as tar:
        members = {member.name: member for member in tar.getmembers()}
        passwd = tar.extractfile(members["etc/passwd"]).read().decode()

    assert members["bin/busybox"].isfile()
    assert members["bin/sh"].issym()
    assert members["bin/sh"].linkname == "/bin/busybox"
    assert members["usr/sbin/httpd"].issym()
    assert members["tmp"].mode == 0o1777
    assert members["home/app"].uid == images.APP_UID
    assert "app:x:1000:1000:" in passwd


def test_busybox_missing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(images, "BUSYBOX_BINARY", tmp_path / "busybox")

    with pytest.raises(images.ImageBuildError, match="busybox-static"):
        images.busybox_rootfs()


def test_ensure_images_idempotent(
    docker_client: docker.DockerClient, built_images: list[str]
) -> None:
    assert ensure_images(docker_client) == []
    for tag in ALL_IMAGES:
        image = docker_client.images.get(tag)
        assert image.labels[DIGEST_LABEL]


def test_demo_serves_site(
    docker_client: docker.DockerClient, built_images: list[str], data_volume: str
) -> None:
    container = run_demo(docker_client, DEMO_IMAGE_1_0, data_volume, SITE_HOSTNAME="a.example")
    try:
        health = fetch(container, "/healthz")
        index = fetch(container, "/")
        version = fetch(container, "/version")
        user = container.exec_run(["id", "-u"])
    finally:
        remove(container)

    # busybox httpd sends files without an extension as application/octet-stream,
    # so those bodies are compared as bytes.
    assert health.status_code == 200
    assert health.content == b"ok\n"
    assert "Hostyard demo site" in index.text
    assert "Version: 1.0" in index.text
    assert "a.example" in index.text
    assert version.content == b"1.0\n"
    assert user.output.decode().strip() == "1000"


def test_demo_update_keeps_data(
    docker_client: docker.DockerClient, built_images: list[str], data_volume: str
) -> None:
    first = run_demo(docker_client, DEMO_IMAGE_1_0, data_volume)
    try:
        fetch(first, "/healthz")
    finally:
        remove(first)

    second = run_demo(docker_client, DEMO_IMAGE_1_1, data_volume)
    try:
        index = fetch(second, "/")
        version = fetch(second, "/version")
    finally:
        remove(second)

    # The page is seeded once per volume; the version file follows the running image.
    assert "Version: 1.0" in index.text
    assert version.content == b"1.1\n"


def test_demo_stop_reaches_httpd(
    docker_client: docker.DockerClient, built_images: list[str], data_volume: str
) -> None:
    container = run_demo(docker_client, DEMO_IMAGE_1_0, data_volume)
    try:
        fetch(container, "/healthz")
        container.stop(timeout=30)
        container.reload()
        exit_code = container.attrs["State"]["ExitCode"]
    finally:
        remove(container)

    # SIGKILL after the stop timeout would give 137; SIGTERM reaching httpd gives 143.
    assert exit_code == 143


def test_broken_image_fails_migration(
    docker_client: docker.DockerClient, built_images: list[str], data_volume: str
) -> None:
    container = run_demo(docker_client, DEMO_IMAGE_BROKEN, data_volume)
    try:
        result = container.wait(timeout=60)
        logs = container.logs().decode()
    finally:
        remove(container)

    assert result["StatusCode"] == 1
    assert BROKEN_MESSAGE in logs
