"""Image reference parsing and normalization (the distribution/reference grammar)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cargobay.containers.reference import ImageReference, parse_reference
from cargobay.errors import InvalidInput, InvalidReference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", None, None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("user/app:v1", "docker.io", "user/app", "v1", None),
        ("docker.io/library/busybox:1", "docker.io", "library/busybox", "1", None),
        ("index.docker.io/user/app", "docker.io", "user/app", None, None),
        ("ghcr.io/org/team/app:2", "ghcr.io", "org/team/app", "2", None),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/app:x", "localhost:5000", "app", "x", None),
        ("127.0.0.1:5000/cbt/app:1", "127.0.0.1:5000", "cbt/app", "1", None),
        (f"busybox@{DIGEST}", "docker.io", "library/busybox", None, DIGEST),
        (f"registry.lan/a_b/c-d:1@{DIGEST}", "registry.lan", "a_b/c-d", "1", DIGEST),
        ("a__b/c---d", "docker.io", "a__b/c---d", None, None),
    ],
)
def test_parse(text: str, domain: str, path: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)


@pytest.mark.parametrize(
    ("text", "familiar", "full"),
    [
        ("busybox", "busybox", "docker.io/library/busybox"),
        ("busybox:1", "busybox:1", "docker.io/library/busybox:1"),
        ("library/busybox:1", "busybox:1", "docker.io/library/busybox:1"),
        ("user/app", "user/app", "docker.io/user/app"),
        ("ghcr.io/x/y:1", "ghcr.io/x/y:1", "ghcr.io/x/y:1"),
        (f"busybox@{DIGEST}", f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    ],
)
def test_familiar_and_full(text: str, familiar: str, full: str) -> None:
    ref = parse_reference(text)
    assert ref.familiar() == familiar
    assert str(ref) == full
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (" busybox", "padded"),
        ("Busybox", "lowercase"),
        ("user/App:1", "lowercase"),
        ("busybox:", "invalid tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox:" + "a" * 129, "invalid tag"),
        ("busybox@sha256:abc", "digest"),
        ("busybox@sha256:" + "a" * 63, "64 hex"),
        ("a//b", "component ''"),
        ("a/-b", "component '-b'"),
        ("host:port:5000/x", "domain|invalid"),
        (":tag", "no repository"),
        ("x/" + "a" * 300, "longer than 255"),
    ],
)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message) as caught:
        parse_reference(text)
    assert isinstance(caught.value, InvalidInput)  # exit code 2 / HTTP 400


def test_tag_default_and_manifest_ref() -> None:
    ref = parse_reference("busybox")
    assert ref.tag_or_latest == "latest"
    assert ref.manifest_ref == "latest"
    assert ref.with_tag_default().tag == "latest"
    pinned = parse_reference(f"busybox:1@{DIGEST}")
    assert pinned.manifest_ref == DIGEST
    assert pinned.with_tag_default() is pinned


def test_with_domain() -> None:
    ref = parse_reference("busybox:1").with_domain("mirror.lan:5000")
    assert str(ref) == "mirror.lan:5000/library/busybox:1"
    with pytest.raises(InvalidReference, match="domain"):
        parse_reference("busybox").with_domain("bad domain")


_component = st.from_regex(r"[a-z0-9]{1,5}(?:[._-][a-z0-9]{1,5}){0,2}", fullmatch=True)
# a first component with a dot would be read as a registry domain (as the Docker CLI does)
_first = st.from_regex(r"[a-z0-9]{1,5}(?:[_-][a-z0-9]{1,5}){0,2}", fullmatch=True)


@given(
    st.tuples(_first, st.lists(_component, max_size=2)).map(lambda t: [t[0], *t[1]]),
    st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True)),
    st.one_of(st.none(), st.sampled_from(["registry.lan", "localhost:5000", "10.0.0.1:443"])),
)
def test_round_trip(components: list[str], tag: str | None, domain: str | None) -> None:
    text = "/".join(components)
    if domain:
        text = f"{domain}/{text}"
    if tag:
        text += f":{tag}"
    ref = parse_reference(text)
    assert isinstance(ref, ImageReference)
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref
    assert ref.tag == tag
