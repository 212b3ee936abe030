"""What makes a backup trusted before it is restored: valid names, a signed manifest, a known format.

A manifest is signed with HMAC-SHA256 over its canonical JSON (sorted keys, no spaces, without
the signature itself) under `[backup] signing_key`. The sha256 of every artifact is inside the
signed text, so changing an artifact means changing the manifest, which breaks the signature.

The policy, applied before anything is stopped, overwritten or restored:
- signed, and the signature matches the key: trusted;
- signed, but it does not match (another key, or an edited manifest): refused with the reason;
  the only way on is an override reason, which the audit record keeps;
- unsigned (an older backup, or no key configured when it was taken or now): in production
  refused unless an override reason is given; elsewhere a loud warning.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import TYPE_CHECKING, Any

from services.core.operations import Declined, StepContext, StepFailed

if TYPE_CHECKING:
    from services.core.container import Services

FORMAT = 3  # manifest format: 3 = a pg_dump custom archive (restored by pg_restore), signed
SIGNATURE = "signature"
ALGORITHM = "hmac-sha256"
# What take_backup's _new_id makes: the UTC second, and -N for a second backup within it.
BACKUP_ID = re.compile(r"\d{8}T\d{6}Z(?:-[1-9]\d{0,3})?")
ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def check_backup_id(backup_id: object) -> str:
    """A backup id as _new_id makes it, or a clear refusal (it becomes part of a store key and a path)."""
    text = str(backup_id)
    if not BACKUP_ID.fullmatch(text):
        raise StepFailed(f"{text[:80]!r} is not a backup id: ids look like 20250101T120000Z (or with -2)",
                         ("backup list --env ENV shows the ids",))
    return text


def check_env_name(env: object) -> str:
    text = str(env)
    if not ENV_NAME.fullmatch(text) or ".." in text:
        raise StepFailed(f"{text[:80]!r} is not a usable environment name for backups: letters, digits, . _ -",
                         ("rename the environment in release.toml",))
    return text


def canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    digest = hmac.new(key.encode(), canonical(manifest), hashlib.sha256).hexdigest()
    return {**manifest, SIGNATURE: {"alg": ALGORITHM, "hmac": digest}}


def signature_problem(manifest: dict[str, Any], key: str | None) -> tuple[str, str]:
    """("", "") when signed and matching; else (kind, reason) with kind "unsigned" or "mismatch"."""
    signature = manifest.get(SIGNATURE)
    if not isinstance(signature, dict) or not signature.get("hmac"):
        return "unsigned", "its manifest is not signed (taken by an older version, or with no signing_key)"
    if key is None:
        return "unsigned", "no [backup] signing_key is configured here, so its signature cannot be checked"
    if signature.get("alg") != ALGORITHM:
        return "mismatch", f"its manifest is signed with {str(signature.get('alg'))[:20]!r}, not {ALGORITHM}"
    expected = hmac.new(key.encode(), canonical(manifest), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(signature["hmac"])):
        return "mismatch", ("its manifest's signature does not match [backup] signing_key: the manifest was"
                            " changed after it was signed, or signed with another key")
    return "", ""


def check_trusted(services: Services, env: str, manifest: dict[str, Any], ctx: StepContext) -> str:
    """Apply the policy above to a manifest; returns how it was trusted, for the step's detail."""
    key = services.config.backup.signing_key
    kind, reason = signature_problem(manifest, key.get_secret_value() if key else None)
    backup_id = str(manifest.get("id", "?"))
    if not kind:
        ctx.log(f"backup {backup_id}: manifest signature matches the signing key")
        return "signed"
    production = services.config.environment(env).production
    if kind == "unsigned" and not production:
        ctx.log(f"WARNING: backup {backup_id} is UNSIGNED: {reason}. Restoring it anyway outside production;"
                " set [backup] signing_key so that backups are signed", "warning")
        return "unsigned (warned)"
    refusal = f"backup {backup_id} is refused: {reason}"
    ctx.log(refusal, "error")
    try:
        given = ctx.ask_reason(f"{refusal}. Restore it anyway? Give a reason (it is audited).")
    except Declined:
        raise StepFailed(f"{refusal}; no override reason was given, nothing was stopped or restored",
                         ("restore another (signed) backup", "check who wrote to the backup store",
                          "or run again with --reason to override, audited")) from None
    ctx.log(f"override: restoring {kind} backup {backup_id} because: {given}", "warning")
    return f"{kind}, overridden: {given}"


def manifest_format(manifest: dict[str, Any]) -> int:
    raw = manifest.get("format", 1)
    return raw if isinstance(raw, int) else 1


def is_archive(manifest: dict[str, Any]) -> bool:
    """A pg_dump custom archive (format 3+); older formats hold plain SQL."""
    return manifest_format(manifest) >= FORMAT
