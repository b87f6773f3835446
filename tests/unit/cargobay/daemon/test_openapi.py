"""The checked-in OpenAPI document must match the app's."""

from __future__ import annotations

import json

from cargobay.daemon.openapi import DEFAULT_OUTPUT, REGENERATE, render


def test_checked_in_openapi_document_is_current() -> None:
    assert DEFAULT_OUTPUT.is_file(), f"{DEFAULT_OUTPUT} is missing; generate it with `{REGENERATE}`"
    checked_in = json.loads(DEFAULT_OUTPUT.read_text())
    current = json.loads(render())
    assert checked_in == current, (
        f"{DEFAULT_OUTPUT} differs from the daemon's API; regenerate it with `{REGENERATE}` "
        "and commit it"
    )


def test_document_covers_the_api() -> None:
    doc = json.loads(render())
    expected = {
        ("get", "/v1/info"),
        ("get", "/v1/machines"),
        ("post", "/v1/machines"),
        ("get", "/v1/machines/{name}"),
        ("delete", "/v1/machines/{name}"),
        ("post", "/v1/machines/{name}/start"),
        ("post", "/v1/machines/{name}/stop"),
        ("post", "/v1/machines/{name}/pause"),
        ("post", "/v1/machines/{name}/resume"),
        ("post", "/v1/machines/{name}/exec"),
        ("get", "/v1/machines/{name}/logs"),
        ("get", "/v1/images"),
        ("post", "/v1/images/build"),
        ("delete", "/v1/images/{name}"),
        ("post", "/v1/spice/probe"),
        ("post", "/v1/daemon/shutdown"),
        ("get", "/v1/hosts"),
        ("post", "/v1/hosts"),
        ("get", "/v1/hosts/{host_id}"),
        ("delete", "/v1/hosts/{host_id}"),
        ("get", "/v1/engine"),
        ("get", "/v1/engine/images"),
        ("post", "/v1/engine/images/pull"),
        ("get", "/v1/engine/containers"),
        ("get", "/v1/engine/logs"),
        ("get", "/v1/engine/stats"),
        ("post", "/v1/compose/up"),
        ("post", "/v1/compose/down"),
        ("post", "/v1/compose/config"),
        ("get", "/v1/docker-sockets"),
        ("post", "/v1/docker-sockets"),
        ("delete", "/v1/docker-sockets/{ident}"),
        ("get", "/v1/hypervisors"),
        ("get", "/v1/machines/{name}/snapshots"),
        ("post", "/v1/machines/{name}/snapshots"),
        ("delete", "/v1/machines/{name}/snapshots/{tag}"),
        ("post", "/v1/machines/{name}/fork"),
        ("post", "/v1/machines/{name}/deploy"),
    }
    actual = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert expected <= actual, f"missing: {sorted(expected - actual)}"
    # every endpoint sits under one of the API's areas (a stray route is a mistake)
    areas = ("info", "machines", "images", "spice", "daemon", "hosts", "engine", "compose")
    areas += ("scenarios", "apps", "docker-sockets")
    areas += ("plugins", "hypervisors")
    stray = sorted(p for _, p in actual if p.split("/")[2] not in areas)
    assert not stray, f"endpoints outside the known areas: {stray}"
    assert doc["paths"]["/v1/machines"]["post"]["responses"]["400"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/ErrorBody"}
