"""Image references: the parts of one, the pinned form a target runs, and the version it reports."""

from __future__ import annotations

import pytest

from services.core.references import digest_of, parts_of, pinned, version_of

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("reference", "parts"), [
    ("127.0.0.1:5000/app:1.4.2", ("127.0.0.1:5000/app", "1.4.2", None)),
    ("127.0.0.1:5000/app", ("127.0.0.1:5000/app", None, None)),
    (f"127.0.0.1:5000/app@{D}", ("127.0.0.1:5000/app", None, D)),
    (f"ghcr.io/example/app:1.4.2@{D}", ("ghcr.io/example/app", "1.4.2", D)),
    ("app", ("app", None, None)),
])
def test_parts_of_a_reference(reference: str, parts: tuple[str, str | None, str | None]) -> None:
    assert parts_of(reference) == parts
    assert digest_of(reference) == parts[2]


def test_pinned_keeps_the_tag_for_people_and_the_digest_for_the_bits() -> None:
    assert pinned("127.0.0.1:5000/app:1.4.2", D) == f"127.0.0.1:5000/app:1.4.2@{D}"
    other = "sha256:" + "cd" * 32
    assert pinned(f"127.0.0.1:5000/app:1.4.2@{other}", D) == f"127.0.0.1:5000/app:1.4.2@{D}"  # re-pinned
    assert pinned("127.0.0.1:5000/app", D) == f"127.0.0.1:5000/app@{D}"


def test_version_is_the_tag_even_when_pinned() -> None:
    assert version_of(f"127.0.0.1:5000/app:1.4.2@{D}") == "1.4.2"
    assert version_of("127.0.0.1:5000/app:1.4.2") == "1.4.2"
    assert version_of(f"127.0.0.1:5000/app@{D}") == "ab" * 6
    assert version_of("127.0.0.1:5000/app") == "latest"
