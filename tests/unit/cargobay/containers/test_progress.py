"""Pull progress folded from the Engine's JSON messages (as dockerd 20.10 sends them)."""

from __future__ import annotations

from typing import Any

import pytest

from cargobay.containers.progress import PullProgress
from cargobay.errors import EngineStreamError

PULL: list[dict[str, Any]] = [
    {"status": "Pulling from cbt/app", "id": "1"},
    {"status": "Already exists", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
    {"status": "Waiting", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
    {
        "status": "Downloading",
        "progressDetail": {"current": 500, "total": 1000},
        "progress": "[=====>     ]",
        "id": "bbbbbbbbbbbb",
    },
    {"status": "Verifying Checksum", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
    {"status": "Download complete", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
    {
        "status": "Extracting",
        "progressDetail": {"current": 250, "total": 1000},
        "id": "bbbbbbbbbbbb",
    },
    {"status": "Pull complete", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
    {"status": "Digest: sha256:" + "c" * 64},
    {"status": "Status: Downloaded newer image for 127.0.0.1:5000/cbt/app:1"},
]


def test_fractions_along_a_pull() -> None:
    progress = PullProgress()
    fractions = {}
    for message in PULL:
        layer = progress.feed(message)
        if layer is not None:
            fractions[(layer.id, message["status"])] = layer.fraction
    assert fractions[("aaaaaaaaaaaa", "Already exists")] == 1.0
    assert fractions[("bbbbbbbbbbbb", "Pulling fs layer")] == 0.0
    assert fractions[("bbbbbbbbbbbb", "Downloading")] == 0.25
    assert fractions[("bbbbbbbbbbbb", "Download complete")] == 0.5
    assert fractions[("bbbbbbbbbbbb", "Extracting")] == 0.625
    assert fractions[("bbbbbbbbbbbb", "Pull complete")] == 1.0
    assert set(progress.layers) == {"aaaaaaaaaaaa", "bbbbbbbbbbbb"}  # not the tag "1"
    assert progress.fraction == 1.0
    assert progress.digest == "sha256:" + "c" * 64
    assert progress.status is not None
    assert progress.status.startswith("Status: Downloaded newer image")
    assert not progress.up_to_date


def test_overall_fraction_is_the_mean_of_layers() -> None:
    progress = PullProgress()
    progress.feed({"status": "Pull complete", "id": "a"})
    progress.feed(
        {"status": "Downloading", "id": "b", "progressDetail": {"current": 0, "total": 9}}
    )
    assert progress.fraction == 0.5


def test_up_to_date() -> None:
    progress = PullProgress()
    progress.feed({"status": "Status: Image is up to date for busybox:1"})
    assert progress.up_to_date
    assert progress.fraction == 1.0


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (
            {"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"},
            "manifest unknown",
        ),
        ({"error": "toomanyrequests: rate limit"}, "toomanyrequests"),
        ({"errorDetail": {"code": 1}, "error": "from error"}, "from error"),
    ],
)
def test_error_inside_the_stream_raises(message: dict[str, Any], text: str) -> None:
    progress = PullProgress()
    progress.feed(PULL[0])
    with pytest.raises(EngineStreamError, match=text) as caught:
        progress.feed(message)
    assert caught.value.engine_status == 0


def test_push_messages() -> None:
    progress = PullProgress()
    assert progress.feed({"status": "The push refers to repository [x/y]"}) is None
    layer = progress.feed(
        {"status": "Pushing", "id": "l1", "progressDetail": {"current": 5, "total": 10}}
    )
    assert layer is not None
    assert layer.fraction == 0.25
    layer = progress.feed({"status": "Pushed", "id": "l1", "progressDetail": {}})
    assert layer is not None
    assert layer.fraction == 1.0
    mounted = progress.feed({"status": "Mounted from cbt/base", "id": "l2"})
    assert mounted is not None
    assert mounted.finished
