"""Image references (``[domain/]path[:tag][@digest]``): parse, normalize, print, rewrite.

A sans-IO port of the grammar of distribution/reference (what the Docker CLI and Engine
accept), so a bad reference is refused before anything talks to an engine or registry,
and so pulls can be pointed at a configured mirror and update checks at the right
registry:

* the first path component is a *domain* when it contains ``.`` or ``:`` or is
  ``localhost`` (``127.0.0.1:5000/app``, ``ghcr.io/x/y``); otherwise the domain is
  ``docker.io`` and a single-component path gets ``library/`` (``busybox`` is
  ``docker.io/library/busybox``);
* path components are lowercase alphanumerics separated by ``.``, ``_``, ``__`` or
  runs of ``-``; a tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; a digest is
  ``algorithm:hex`` (sha256 with 64 hex digits);
* with neither tag nor digest the tag is ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cargobay.errors import InvalidReference

__all__ = ["DEFAULT_DOMAIN", "ImageReference", "parse_reference"]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = ("index.docker.io", "registry-1.docker.io")
OFFICIAL_PREFIX = "library/"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalized image reference; ``str()`` gives the fully qualified form."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``domain/path`` (the repository, fully qualified)."""
        return f"{self.domain}/{self.path}"

    @property
    def tag_or_latest(self) -> str:
        return self.tag or ("latest" if self.digest is None else "")

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def familiar(self) -> str:
        """The short form the Docker CLI prints (``busybox:latest``, ``ghcr.io/x/y:1``)."""
        path = self.path
        if self.domain == DEFAULT_DOMAIN:
            if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX) :]:
                path = path[len(OFFICIAL_PREFIX) :]
            text = path
        else:
            text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def with_tag_default(self) -> ImageReference:
        """The same reference with ``latest`` filled in when it has neither tag nor digest."""
        if self.tag is None and self.digest is None:
            return ImageReference(self.domain, self.path, "latest", None)
        return self

    def with_domain(self, domain: str) -> ImageReference:
        """The same repository path on another registry (a mirror)."""
        return ImageReference(_check_domain(domain, str(self)), self.path, self.tag, self.digest)

    @property
    def manifest_ref(self) -> str:
        """What goes after ``/manifests/`` in the registry API: the digest, else the tag."""
        return self.digest or self.tag or "latest"


def _check_domain(domain: str, text: str) -> str:
    if not _DOMAIN.fullmatch(domain):
        raise InvalidReference(f"invalid registry domain {domain!r} in image reference {text!r}")
    return domain


def parse_reference(text: str) -> ImageReference:
    """Parse and normalize ``text``; :class:`InvalidReference` says what is wrong."""
    original = text
    if not text or text != text.strip():
        raise InvalidReference(f"invalid image reference {original!r}: empty or padded")
    digest: str | None = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise InvalidReference(f"invalid digest {digest!r} in image reference {original!r}")
        if digest.startswith("sha256:") and len(digest) != len("sha256:") + 64:
            raise InvalidReference(
                f"invalid sha256 digest in image reference {original!r}: needs 64 hex digits"
            )
    tag: str | None = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"invalid tag {tag!r} in image reference {original!r}")
    if not text:
        raise InvalidReference(f"invalid image reference {original!r}: no repository name")
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = _check_domain(first, original), rest
    else:
        domain, path = DEFAULT_DOMAIN, text
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            hint = " (repository names must be lowercase)" if component.lower() != component else ""
            raise InvalidReference(
                f"invalid repository name component {component!r} in image reference "
                f"{original!r}{hint}"
            )
    if len(f"{domain}/{path}") > _MAX_NAME:
        raise InvalidReference(f"image reference {original!r} is longer than {_MAX_NAME} bytes")
    return ImageReference(domain, path, tag, digest)
