"""Build the local test images without a registry: a busybox base and the demo site.

No registry is reachable from the development machines, so nothing is pulled. The
base ``hostyard/busybox:1`` is a root filesystem made from Debian's static busybox
(``/bin/busybox`` from ``busybox-static``) and imported into the engine. The demo
images are built FROM it by the engine's classic builder, with the contexts in
``devstack/images/``:

- ``hostyard/demo:1.0`` and ``hostyard/demo:1.1``: busybox httpd on port 8080 as
  uid 1000, serving ``/data/www`` (the site's data volume is mounted at ``/data``).
- ``hostyard/demo:broken``: the 1.1 image whose start-up migration fails (exit 1).

Each image carries a label with a digest of its inputs, so ``ensure_images`` rebuilds
an image when its context, its base or the busybox binary changed.
"""

import contextlib
import fcntl
import hashlib
import inspect
import io
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import structlog

from devstack.system import default_run_dir

log = structlog.get_logger(__name__)

CONTEXT_DIR = Path(__file__).resolve().parent / "images"
BUSYBOX_BINARY = Path("/bin/busybox")

BUSYBOX_IMAGE = "hostyard/busybox:1"
DEMO_IMAGE_1_0 = "hostyard/demo:1.0"
DEMO_IMAGE_1_1 = "hostyard/demo:1.1"
DEMO_IMAGE_BROKEN = "hostyard/demo:broken"
ALL_IMAGES = (BUSYBOX_IMAGE, DEMO_IMAGE_1_0, DEMO_IMAGE_1_1, DEMO_IMAGE_BROKEN)

DEMO_PORT = 8080
DEMO_DATA_PATH = "/data"
BROKEN_MESSAGE = "migration failed: schema version 3 expected"

# Label holding a SHA-256 of everything an image was made from.
DIGEST_LABEL = "hostyard.devstack.digest"

APP_UID = 1000
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageBuildError(RuntimeError):
    """An image could not be made; the message names the image and the fix."""


@dataclass(frozen=True)
class DemoImage:
    """One image built from ``devstack/images/demo`` FROM an already present base."""

    tag: str
    dockerfile: str
    base: str
    buildargs: dict[str, str] = field(default_factory=dict)


DEMO_BUILDS = (
    DemoImage(DEMO_IMAGE_1_0, "Dockerfile", BUSYBOX_IMAGE, {"DEMO_VERSION": "1.0"}),
    DemoImage(DEMO_IMAGE_1_1, "Dockerfile", BUSYBOX_IMAGE, {"DEMO_VERSION": "1.1"}),
    DemoImage(DEMO_IMAGE_BROKEN, "broken.Dockerfile", DEMO_IMAGE_1_1),
)


def ensure_images(client: docker.DockerClient, *, force: bool = False) -> list[str]:
    """Make every image in ``ALL_IMAGES`` present and current; return the tags built now.

    Idempotent: an image whose digest label matches its inputs is kept, so a second
    call only inspects images. ``force`` rebuilds all of them. A file lock in the run
    directory serializes concurrent callers (parallel test sessions). Raises
    ImageBuildError if busybox is missing or a build fails.
    """
    built: list[str] = []
    replaced: list[str] = []
    with _build_lock():
        busybox_digest = _busybox_digest()
        current_id, current_digest = _image_state(client, BUSYBOX_IMAGE)
        if force or current_digest != busybox_digest:
            _import_busybox(client, busybox_digest)
            built.append(BUSYBOX_IMAGE)
            replaced.append(current_id)

        for image in DEMO_BUILDS:
            base_id = client.images.get(image.base).id
            digest = _demo_digest(image, base_id)
            current_id, current_digest = _image_state(client, image.tag)
            if force or current_digest != digest:
                _build_demo(client, image, digest)
                built.append(image.tag)
                replaced.append(current_id)

        _remove_replaced(client, replaced)

    return built


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    run_dir = default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "images.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _image_state(client: docker.DockerClient, tag: str) -> tuple[str, str | None]:
    """Return the image ID behind ``tag`` and its digest label, or ("", None)."""
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return "", None
    return image.id, (image.labels or {}).get(DIGEST_LABEL)


def _remove_replaced(client: docker.DockerClient, image_ids: list[str]) -> None:
    # Children first, because the engine keeps a base that other images build on.
    # An image still used by a container is kept too, because the engine returns 409.
    for image_id in reversed([image_id for image_id in image_ids if image_id]):
        try:
            client.images.remove(image_id)
        except docker.errors.ImageNotFound:
            continue
        except docker.errors.APIError as exc:
            log.info("image_kept", image=image_id, reason=exc.explanation)


# --- busybox base -------------------------------------------------------------------


def _read_busybox() -> bytes:
    try:
        return BUSYBOX_BINARY.read_bytes()
    except FileNotFoundError as exc:
        raise ImageBuildError(
            f"{BUSYBOX_BINARY} not found, so {BUSYBOX_IMAGE} cannot be made. "
            "Install Debian's busybox-static with scripts/install."
        ) from exc


def _busybox_digest() -> str:
    digest = hashlib.sha256()
    digest.update(_read_busybox())
    for name in ("passwd", "group"):
        digest.update((CONTEXT_DIR / "busybox" / name).read_bytes())
    # The layout code is part of the input: changing it must rebuild the base.
    digest.update(inspect.getsource(busybox_rootfs).encode())
    return digest.hexdigest()


def _applet_paths() -> list[str]:
    # busybox lists its applets with their install paths ("bin/sh", "usr/bin/wget").
    # The list is compiled into the binary, so the host's copy gives the image's.
    result = subprocess.run(  # noqa: S603 - fixed argv
        [str(BUSYBOX_BINARY), "--list-full"], capture_output=True, text=True, check=True
    )
    return sorted({line.strip() for line in result.stdout.splitlines() if line.strip()})


def busybox_rootfs() -> bytes:
    """Return a tar of the base root filesystem: busybox, its applet links, users, /tmp.

    Users: root (0), app (1000, home /home/app) and nobody (65534). /tmp is 1777.
    """
    binary = _read_busybox()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directories = {
            "bin": 0o755,
            "sbin": 0o755,
            "usr": 0o755,
            "usr/bin": 0o755,
            "usr/sbin": 0o755,
            "usr/local": 0o755,
            "usr/local/bin": 0o755,
            "etc": 0o755,
            "dev": 0o755,
            "proc": 0o555,
            "sys": 0o555,
            "root": 0o700,
            "home": 0o755,
            "var": 0o755,
            "tmp": 0o1777,
        }
        for path, mode in directories.items():
            _add_entry(tar, path, tarfile.DIRTYPE, mode)
        _add_entry(tar, "home/app", tarfile.DIRTYPE, 0o755, owner=APP_UID)

        _add_entry(tar, "bin/busybox", tarfile.REGTYPE, 0o755, data=binary)
        for applet in _applet_paths():
            if applet != "bin/busybox":
                _add_entry(tar, applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox")

        for name in ("passwd", "group"):
            data = (CONTEXT_DIR / "busybox" / name).read_bytes()
            _add_entry(tar, f"etc/{name}", tarfile.REGTYPE, 0o644, data=data)

    return buffer.getvalue()


def _add_entry(
    tar: tarfile.TarFile,
    path: str,
    kind: bytes,
    mode: int,
    *,
    data: bytes = b"",
    link: str = "",
    owner: int = 0,
) -> None:
    info = tarfile.TarInfo(path)
    info.type = kind
    info.mode = mode
    info.uid = info.gid = owner
    info.mtime = 0
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _import_busybox(client: docker.DockerClient, digest: str) -> None:
    started = time.monotonic()
    repository, tag = BUSYBOX_IMAGE.rsplit(":", 1)
    changes = [
        f"ENV PATH={_PATH}",
        f"LABEL {DIGEST_LABEL}={digest}",
        'CMD ["sh"]',
    ]
    try:
        client.api.import_image_from_data(
            busybox_rootfs(), repository=repository, tag=tag, changes=changes
        )
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"Importing {BUSYBOX_IMAGE} failed: {exc.explanation}") from exc
    log.info("image_built", image=BUSYBOX_IMAGE, seconds=round(time.monotonic() - started, 2))


# --- demo images --------------------------------------------------------------------


def _demo_digest(image: DemoImage, base_id: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"{image.dockerfile}\0{sorted(image.buildargs.items())}\0{base_id}".encode())
    context = CONTEXT_DIR / "demo"
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(f"\0{path.relative_to(context)}\0{path.stat().st_mode & 0o111}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _build_demo(client: docker.DockerClient, image: DemoImage, digest: str) -> None:
    started = time.monotonic()
    try:
        # The engine's /build endpoint runs the classic builder (BuildKit is not
        # installed). No network: the build fetches nothing. Proxy settings from
        # ~/.docker/config.json stay out of the build arguments.
        client.images.build(
            path=str(CONTEXT_DIR / "demo"),
            dockerfile=image.dockerfile,
            tag=image.tag,
            buildargs=image.buildargs,
            labels={DIGEST_LABEL: digest},
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="none",
            use_config_proxy=False,
        )
    except docker.errors.BuildError as exc:
        output = "".join(
            str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log
        )
        raise ImageBuildError(f"Building {image.tag} failed: {exc.msg}\n{output[-2000:]}") from exc
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"Building {image.tag} failed: {exc.explanation}") from exc
    log.info("image_built", image=image.tag, seconds=round(time.monotonic() - started, 2))
