"""Label and field selectors, as predicates over labels and objects."""

from __future__ import annotations

import re
from collections.abc import Callable

from .resources import ApiError


def _split_terms(selector: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    terms.append(cur)
    return [t.strip() for t in terms if t.strip()]


def label_selector(selector: str | None) -> Callable[[dict], bool]:
    """Predicate over a labels dict for =, ==, !=, in, notin, key, !key."""
    checks: list[Callable[[dict], bool]] = []
    for term in _split_terms(selector or ""):
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            key, op, vals = (
                m.group(1),
                m.group(2),
                {v.strip() for v in m.group(3).split(",")},
            )
            if op == "in":
                checks.append(lambda lb, k=key, v=vals: lb.get(k) in v)
            else:
                checks.append(lambda lb, k=key, v=vals: lb.get(k) not in v)
        elif m := re.fullmatch(r"([\w./-]+)\s*(!=|==|=)\s*([\w./-]*)", term):
            key, op, val = m.groups()
            if op == "!=":
                checks.append(lambda lb, k=key, v=val: lb.get(k) != v)
            else:
                checks.append(lambda lb, k=key, v=val: lb.get(k) == v)
        elif m := re.fullmatch(r"!\s*([\w./-]+)", term):
            absent = m.group(1)
            checks.append(lambda lb, k=absent: k not in lb)
        elif re.fullmatch(r"[\w./-]+", term):
            checks.append(lambda lb, k=term: k in lb)
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return lambda labels: all(check(labels or {}) for check in checks)


def field_selector(selector: str | None) -> Callable[[dict], bool]:
    """Predicate over an object for path=value / path!=value (any dotted path)."""
    checks: list[Callable[[dict], bool]] = []
    for term in _split_terms(selector or ""):
        m = re.fullmatch(r"([\w.]+)\s*(!=|==|=)\s*(.*)", term)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term!r}")
        path, op, val = m.groups()

        def get(obj: dict, path: str = path) -> str:
            for part in path.split("."):
                obj = obj.get(part) if isinstance(obj, dict) else None
            return "" if obj is None else str(obj)

        if op == "!=":
            checks.append(lambda o, g=get, v=val: g(o) != v)
        else:
            checks.append(lambda o, g=get, v=val: g(o) == v)
    return lambda obj: all(check(obj) for check in checks)
