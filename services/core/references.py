"""Docker image references and the names the console writes into generated config, checked.

One place for the grammar (distribution/reference's), so a version or a name is refused with
the same words before any operation starts, whichever face asked:

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ host [ ":" port ] "/" ] component ( "/" component )*
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest     := "sha256:" 64 lowercase hex digits (the only algorithm the console accepts)

A bad value is a ValueError (the CLI exits 2). Messages show the value with repr(), so a
newline or a control character is visible rather than acted on.
"""

from __future__ import annotations

import re

TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
# As docker reads it: the first part is a registry host only with a '.', a port, or as localhost;
# otherwise it is a path component (so "UPPER/app" is refused, as `docker pull` refuses it).
_HOST = rf"(?:(?:{_LABEL}(?:\.{_LABEL})+|localhost)(?::[0-9]{{1,5}})?|{_LABEL}:[0-9]{{1,5}})"
_DIGEST = r"sha256:[a-f0-9]{64}"
_TAG_RE = re.compile(TAG)
_REPOSITORY_RE = re.compile(rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*")
_REFERENCE_RE = re.compile(rf"(?P<name>{_REPOSITORY_RE.pattern})(?::(?P<tag>{TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
MAX_NAME = 255  # docker's limit on a repository name's length
NAME_CHARS = "A-Z a-z 0-9 . _ -"


def check_tag(tag: str, what: str = "version") -> str:
    """A docker tag, e.g. 1.4.2 or main-abc1234."""
    if not _TAG_RE.fullmatch(tag):
        why = ("is longer than 128 characters" if len(tag) > 128 else
               "may use only letters, digits, '_', '.' and '-', and may not start with '.' or '-'")
        raise ValueError(f"{what} {_shown(tag)} is not a valid docker tag: it {why} (e.g. 1.4.2)")
    return tag


def check_repository(name: str, what: str = "image") -> str:
    """An image repository without a tag, e.g. ghcr.io/example/app or 127.0.0.1:5000/app."""
    if len(name) > MAX_NAME or not _REPOSITORY_RE.fullmatch(name):
        raise ValueError(f"{what} {_shown(name)} is not a valid image repository: [host[:port]/]path, the path in"
                         " lower case letters, digits and single separators ('.', '_', '-'), e.g. ghcr.io/example/app")
    return name


def check_reference(reference: str, what: str = "image") -> str:
    """A full reference: repository, optional :tag, optional @sha256:<64 hex>."""
    found = _REFERENCE_RE.fullmatch(reference)
    if not found or len(found["name"]) > MAX_NAME:
        raise ValueError(f"{what} {_shown(reference)} is not a valid image reference: repository[:tag][@sha256:digest],"
                         " e.g. ghcr.io/example/app:1.4.2")
    return reference


def version_of(image: str) -> str:
    """The version a deploy target gives the app (its VERSION) and /api/health must report: the tag of
    an image reference (registry:5000/app:1.2 and app:1.2@sha256:... -> 1.2), "latest" without one, or
    the digest's first 12 hex digits when the reference pins a digest and has no tag."""
    _, tag, digest = parts_of(image)
    if tag:
        return tag
    return digest.removeprefix("sha256:")[:12] if digest else "latest"


def parts_of(reference: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of a reference; tag and digest None when absent."""
    rest, _, digest = reference.partition("@")
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = rest.rsplit(":", 1)
        return name, tag, digest or None
    return rest, None, digest or None


def digest_of(reference: str) -> str | None:
    """The sha256:... a reference pins, or None."""
    return parts_of(reference)[2]


def pinned(image: str, digest: str) -> str:
    """What a target runs: the tag kept for people (and version_of), the digest for the bits,
    e.g. registry:5000/app:1.4.2@sha256:...; Docker and Kubernetes pull by the digest alone."""
    name, tag, _ = parts_of(image)
    return f"{name}:{tag}@{digest}" if tag else f"{name}@{digest}"


def unpinned(reference: str) -> str:
    """The reference as people name it: repo:tag without its digest (a revision records the digest
    beside it); a reference pinning a digest without a tag stays as it is, the digest its only name."""
    name, tag, _ = parts_of(reference)
    return f"{name}:{tag}" if tag else reference


def check_name(name: str, what: str) -> str:
    """A name that goes into generated config (nginx upstream file, container names): [A-Za-z0-9._-] only."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"{what} {_shown(name)} may use only {NAME_CHARS} (it goes into generated config)")
    return name


# Kubernetes names, by the API server's own rules: a namespace is a DNS-1123 label, a Service a DNS-1035
# label (so it starts with a letter), an Ingress host or a Gateway name a DNS-1123 subdomain.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
KUBE_NAMES = {
    "label": (_DNS_LABEL, 63, "lower case letters, digits and '-', starting and ending with a letter or digit"),
    "dns1035": (r"[a-z]([-a-z0-9]*[a-z0-9])?", 63,
                "lower case letters, digits and '-', starting with a letter and ending with a letter or digit"),
    "subdomain": (rf"{_DNS_LABEL}(\.{_DNS_LABEL})*", 253,
                  "lower case letters, digits, '-' and '.', each part starting and ending with a letter or digit"),
}


def check_kube_name(name: str, what: str, rule: str, limit: int | None = None) -> str:
    """A name the Kubernetes API server accepts (`rule`: label, dns1035 or subdomain), so that a bad one
    is refused when the config is read rather than by the cluster in the middle of a deploy."""
    regex, most, chars = KUBE_NAMES[rule]
    most = limit or most
    if len(name) > most or not re.fullmatch(regex, name):
        raise ValueError(f"{what} {_shown(name)} is not a name Kubernetes accepts: {chars}, at most {most} "
                         "characters")
    return name


def is_name(name: str) -> bool:
    return bool(_NAME_RE.fullmatch(name))


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")
