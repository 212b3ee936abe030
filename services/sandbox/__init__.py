"""A deterministic, seeded, in-process world implementing every port, for drills and UI tests."""
