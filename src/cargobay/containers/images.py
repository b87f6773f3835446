"""Container images on the engine: pull (with mirrors and per-layer progress), list,
remove, prune, and "is an update available?".

* ``pull`` validates the reference first (:class:`InvalidReference` before any I/O),
  then tries each configured mirror of the reference's registry and finally the registry
  itself; an image pulled from a mirror is tagged back under the name that was asked for
  and the mirror's tag is dropped.  Progress goes through :class:`PullProgress`; an error
  inside the 200 stream is an :class:`EngineStreamError`.
* ``check_update`` compares the digests the Engine recorded when the image was pulled
  or pushed (``RepoDigests``) with the digest the registry now serves for the tag
  (:class:`RegistryClient`).  Digests are compared by value, so an image that came from a
  mirror is checked against its origin correctly.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel, Field

from cargobay.containers.auth import DockerCredentials
from cargobay.containers.engine import DockerEngine
from cargobay.containers.progress import LayerProgress, PullProgress
from cargobay.containers.reference import ImageReference, parse_reference
from cargobay.containers.registry import RegistryClient
from cargobay.containers.settings import ContainerSettings, config_path
from cargobay.errors import ContainerError, EngineError, EngineUnavailable, ImageNotFound

__all__ = [
    "ImageService",
    "ImageSummary",
    "PullResult",
    "UpdateCheck",
    "check_image_name",
    "pull_name",
]

_IMAGE_ID = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}")
PullCallback = Callable[[PullProgress, LayerProgress | None], None]


class ImageSummary(BaseModel):
    id: str
    repo_tags: list[str] = Field(default_factory=list)
    repo_digests: list[str] = Field(default_factory=list)
    created: int = 0
    size: int = 0
    containers: int = -1
    labels: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_engine(cls, item: dict[str, Any]) -> ImageSummary:
        tags = [t for t in item.get("RepoTags") or [] if t != "<none>:<none>"]
        digests = [d for d in item.get("RepoDigests") or [] if d != "<none>@<none>"]
        return cls(
            id=str(item.get("Id", "")),
            repo_tags=tags,
            repo_digests=digests,
            created=int(item.get("Created") or 0),
            size=int(item.get("Size") or 0),
            containers=int(item.get("Containers", -1)),
            labels=dict(item.get("Labels") or {}),
        )


class PullResult(BaseModel):
    reference: str
    """What was asked for, in the CLI's short form."""
    pulled_from: str
    """The reference actually pulled (a mirror's, or the same)."""
    image_id: str
    digest: str | None = None
    up_to_date: bool = False
    mirror_failures: list[str] = Field(default_factory=list)


class UpdateCheck(BaseModel):
    reference: str
    present: bool
    """Whether the image is on the engine at all."""
    local_digests: list[str] = Field(default_factory=list)
    remote_digest: str
    update_available: bool


def pull_name(ref: ImageReference) -> tuple[str, str | None]:
    """``fromImage`` and ``tag`` as the Docker CLI sends them (short name for Docker Hub;
    a digest goes in ``tag``)."""
    name = ref.familiar().split("@", 1)[0]
    if ref.tag:
        name = name[: -(len(ref.tag) + 1)]
    return name, ref.digest or ref.tag or "latest"


_UNREACHABLE = re.compile(
    r"dial tcp|no such host|connection refused|i/o timeout|TLS handshake timeout|"
    r"network is unreachable|Client.Timeout"
)


def _with_note(err: ContainerError, note: str) -> ContainerError:
    """The same kind of error with ``note`` appended to its message."""
    if isinstance(err, EngineError):
        return type(err)(
            f"{err}{note}", engine_status=err.engine_status, engine_message=err.engine_message
        )
    return type(err)(f"{err}{note}")


def check_image_name(reference: str) -> None:
    """An image id (``sha256:...`` or a hex prefix) or a valid reference, else
    :class:`InvalidReference` saying what is wrong."""
    if not _IMAGE_ID.fullmatch(reference):
        parse_reference(reference)


def _digest_values(repo_digests: list[str]) -> list[str]:
    return sorted({item.rsplit("@", 1)[-1] for item in repo_digests if "@" in item})


class ImageService:
    """Image operations over one connected engine."""

    def __init__(
        self,
        engine: DockerEngine,
        settings: ContainerSettings | None = None,
        *,
        registry: RegistryClient | None = None,
        credentials: DockerCredentials | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings or ContainerSettings()
        self._registry = registry
        self._credentials = credentials

    @property
    def credentials(self) -> DockerCredentials:
        """Registry credentials from the Docker config (read on first use)."""
        if self._credentials is None:
            self._credentials = DockerCredentials.load()
        return self._credentials

    async def pull(self, reference: str, on_progress: PullCallback | None = None) -> PullResult:
        ref = parse_reference(reference)
        failures: list[str] = []
        for candidate in [*self.settings.registry.mirrors_for(ref), ref]:
            progress = PullProgress()

            def feed(message: dict[str, Any], progress: PullProgress = progress) -> None:
                layer = progress.feed(message)
                if on_progress is not None:
                    on_progress(progress, layer)

            name, tag = pull_name(candidate)
            # a credential helper is a subprocess: keep it off the event loop
            auth = await asyncio.to_thread(self.credentials.for_domain, candidate.domain)
            try:
                await self.engine.pull_image(
                    name, tag=tag, auth=auth.header() if auth else None, on_progress=feed
                )
            except EngineUnavailable:
                raise
            except ContainerError as err:
                if candidate is ref:
                    note = f" (mirrors failed too: {'; '.join(failures)})" if failures else ""
                    if _UNREACHABLE.search(str(err)) and not failures:
                        note += (
                            f"; registry {ref.domain} is unreachable: check the network, or "
                            f"configure a mirror for it under [registry.mirrors] in "
                            f"{config_path()}"
                        )
                    if note:
                        raise _with_note(err, note) from err
                    raise
                failures.append(f"{candidate.domain}: {err}")
                continue
            wanted = ref.familiar()
            if candidate is not ref:
                mirrored = candidate.familiar()
                if ref.digest is None:
                    repo, _ = pull_name(ref)
                    await self.engine.tag_image(mirrored, repo, ref.tag or "latest")
                    await self.engine.remove_image(mirrored, noprune=True)
                else:
                    wanted = mirrored
            inspected = await self.engine.inspect_image(
                wanted if ref.tag or ref.digest else f"{wanted}:latest"
            )
            return PullResult(
                reference=ref.familiar(),
                pulled_from=candidate.familiar(),
                image_id=str(inspected["Id"]),
                digest=progress.digest,
                up_to_date=progress.up_to_date,
                mirror_failures=failures,
            )
        raise AssertionError("unreachable: the origin is always the last candidate")

    async def pull_events(self, reference: str) -> AsyncIterator[dict[str, Any]]:
        """``pull`` as events: ``{"type": "layer", ...}``, ``{"type": "status", ...}`` and at
        the end ``{"type": "done", "result": {...}}``; errors are raised."""
        parse_reference(reference)  # a bad reference fails before the stream starts
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def on_progress(progress: PullProgress, layer: LayerProgress | None) -> None:
            if layer is not None:
                event = {"type": "layer", **layer.as_dict(), "overall": round(progress.fraction, 4)}
            else:
                event = {"type": "status", "status": progress.status, "digest": progress.digest}
            queue.put_nowait(event)

        task = asyncio.create_task(self.pull(reference, on_progress))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                result = task.result()
                yield {"type": "done", "result": result.model_dump(mode="json")}
                return
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def list_images(
        self, *, all: bool = False, labels: dict[str, str | None] | None = None
    ) -> list[ImageSummary]:
        items = await self.engine.list_images(all=all, labels=labels)
        return sorted(
            (ImageSummary.from_engine(item) for item in items),
            key=lambda image: (-image.created, image.id),
        )

    async def remove(
        self, reference: str, *, force: bool = False, noprune: bool = False
    ) -> list[dict[str, str]]:
        check_image_name(reference)
        return [
            {str(k): str(v) for k, v in item.items()}
            for item in await self.engine.remove_image(reference, force=force, noprune=noprune)
        ]

    async def prune(
        self, *, all: bool = False, labels: dict[str, str | None] | None = None
    ) -> dict[str, Any]:
        """Remove dangling images (``all``: every image no container uses)."""
        result = await self.engine.prune_images(dangling=not all, labels=labels)
        deleted = result.get("ImagesDeleted") or []
        return {
            "deleted": [next(iter(item.values())) for item in deleted if item],
            "space_reclaimed": int(result.get("SpaceReclaimed") or 0),
        }

    async def check_update(self, reference: str) -> UpdateCheck:
        ref = parse_reference(reference).with_tag_default()
        try:
            inspected = await self.engine.inspect_image(ref.familiar())
        except ImageNotFound:
            inspected = None
        local = _digest_values(list((inspected or {}).get("RepoDigests") or []))
        # a credential helper is a subprocess: keep it off the event loop
        auth = await asyncio.to_thread(self.credentials.for_domain, ref.domain)
        registry = self._registry or RegistryClient(
            insecure=set(self.settings.registry.insecure),
            credentials=lambda domain: auth if domain == ref.domain else None,
        )
        try:
            remote = await registry.manifest_digest(ref)
        finally:
            if self._registry is None:
                await registry.aclose()
        return UpdateCheck(
            reference=ref.familiar(),
            present=inspected is not None,
            local_digests=local,
            remote_digest=remote,
            update_available=remote not in local,
        )
