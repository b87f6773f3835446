"""Per-layer progress of a pull or push, from the Engine's JSON message stream (sans-IO).

The Engine reports a pull as one JSON object per line: ``{"status": "Pulling from
library/busybox", "id": "1.36"}``, then per layer ``{"id": "<12 hex>", "status":
"Pulling fs layer" | "Waiting" | "Downloading" | "Verifying Checksum" | "Download
complete" | "Extracting" | "Pull complete" | "Already exists", "progressDetail":
{"current": n, "total": m}}``, and at the end ``{"status": "Digest: sha256:..."}`` and
``{"status": "Status: Downloaded newer image for ..."}`` (or "Image is up to date").
An ``error``/``errorDetail`` line is a failure even though the HTTP status was 200.

:class:`PullProgress` folds those messages into a table of layers a progress bar can
draw; :meth:`feed` returns the layer a message changed so a renderer only redraws that
one.  Downloads count the first half of a layer, extraction the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cargobay.errors import EngineStreamError

__all__ = ["LayerProgress", "PullProgress"]

_DONE = {"Pull complete", "Already exists", "Download complete", "Pushed", "Layer already exists"}
_FINISHED = {"Pull complete", "Already exists", "Pushed", "Layer already exists", "Mounted from"}


@dataclass(slots=True)
class LayerProgress:
    id: str
    status: str = ""
    current: int = 0
    total: int = 0
    downloaded: bool = False
    finished: bool = False

    @property
    def fraction(self) -> float:
        """0..1: download is the first half, extraction the second."""
        if self.finished:
            return 1.0
        part = self.current / self.total if self.total > 0 else 0.0
        part = min(max(part, 0.0), 1.0)
        if self.status.startswith("Extracting"):
            return 0.5 + part / 2
        if self.downloaded or self.status in ("Verifying Checksum", "Download complete"):
            return 0.5
        if self.status.startswith(("Downloading", "Pushing")):
            return part / 2
        return 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "current": self.current,
            "total": self.total,
            "fraction": round(self.fraction, 4),
        }


@dataclass
class PullProgress:
    """State of one pull (or push) built from its messages."""

    layers: dict[str, LayerProgress] = field(default_factory=dict)
    digest: str | None = None
    status: str | None = None
    """The last message without a layer id ("Status: Downloaded newer image for ...")."""
    messages: int = 0

    def feed(self, message: dict[str, Any]) -> LayerProgress | None:
        """Take one message; return the layer it updated (``None`` for overall status).
        Raises :class:`EngineStreamError` for an error message."""
        self.messages += 1
        error = message.get("errorDetail") or message.get("error")
        if error:
            text = error.get("message") if isinstance(error, dict) else str(error)
            text = str(text or message.get("error") or "unknown error")
            raise EngineStreamError(text, engine_message=text)
        status = str(message.get("status", ""))
        layer_id = message.get("id")
        if status.startswith("Digest: "):
            self.digest = status[len("Digest: ") :].strip()
            return None
        detail = message.get("progressDetail") or {}
        # "Pulling from library/busybox" carries the tag as its id, not a layer
        if not layer_id or status.startswith(("Pulling from", "The push refers to")):
            self.status = status or self.status
            return None
        layer = self.layers.get(layer_id)
        if layer is None:
            layer = self.layers[layer_id] = LayerProgress(str(layer_id))
        layer.status = status
        if isinstance(detail, dict) and "current" in detail:
            layer.current = int(detail.get("current") or 0)
            layer.total = int(detail.get("total") or 0)
        if status in _DONE or status == "Verifying Checksum":
            layer.downloaded = True
        if status in _FINISHED or status.startswith("Mounted from"):
            layer.finished = True
        return layer

    @property
    def fraction(self) -> float:
        if not self.layers:
            return 1.0 if self.status and self.status.startswith("Status:") else 0.0
        return sum(layer.fraction for layer in self.layers.values()) / len(self.layers)

    @property
    def bytes_total(self) -> int:
        return sum(layer.total for layer in self.layers.values())

    @property
    def up_to_date(self) -> bool:
        return bool(self.status and "Image is up to date" in self.status)
