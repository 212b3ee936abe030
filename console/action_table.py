"""One table over the action kinds: each action's key, the pane its progress shows in, its CLI words
and its title. The TUI's bindings, the palette, the `?` help and the CLI's commands are all built from
it, and tests/unit/test_action_table.py checks it against the catalog, so an action cannot be
reachable one way and not another.

A leaf: it imports nothing of the services, so `release-console --help` lists every command without
loading them (the titles are the catalog's, kept equal by that test).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionEntry:
    kind: str
    key: str  # Textual key name; capitals are destructive, and always confirmed
    pane: str  # where its progress is best watched
    command: tuple[str, ...]  # CLI words: ("migrate", "deploy"), or one word for a top-level command
    title: str
    also: tuple[str, ...] = ()  # a second, top-level command for the same action


# The panes, in tab order, and their keys ("1" focuses the environments list).
PANES = {"build": "2", "migrations": "3", "canary": "4", "backups": "5", "audit": "6"}

# In the footer's and the help's order.
ACTIONS = (
    ActionEntry("release", "d", "build", ("pipeline", "run"), "Release pipeline: checks, build, push, deploy",
                also=("release",)),
    ActionEntry("migrate", "m", "migrations", ("migrate", "deploy"), "Apply pending migrations (backup first)"),
    ActionEntry("backup", "b", "backups", ("backup", "create"), "Take a backup (database + app files)"),
    ActionEntry("canary", "c", "canary", ("canary", "run"),
                "Run a canary: start, baseline, monitor, then promote or roll back"),
    ActionEntry("expand-add-column", "e", "migrations", ("expand", "add-column"),
                "Expand/contract: add a column (expand, backfill, contract)"),
    ActionEntry("expand-rename-column", "n", "migrations", ("expand", "rename-column"),
                "Expand/contract: rename a column (expand, backfill, contract)"),
    ActionEntry("verify", "v", "backups", ("backup", "verify"),
                "Verify a backup: checksums, then a trial restore into a scratch database"),
    ActionEntry("backup-pin", "p", "backups", ("backup", "pin"), "Pin a backup to a release, so retention keeps it"),
    ActionEntry("restore-drill", "D", "backups", ("drill",),
                "Recovery drill: restore a backup into scratch and measure the RTO"),
    ActionEntry("pitr-backup", "i", "backups", ("pitr", "backup"), "Take a pgBackRest backup (full, diff or incr)"),
    ActionEntry("push", "u", "build", ("push",), "Build the image, check its policy, push it"),
    ActionEntry("build", "U", "build", ("build",), "Build the image and check its policy"),
    ActionEntry("rollback", "R", "build", ("rollback",), "Roll back to an earlier revision"),
    ActionEntry("restore", "X", "backups", ("restore",), "Disaster recovery: restore from a backup"),
    ActionEntry("pitr-restore", "I", "backups", ("pitr", "restore"),
                "Point-in-time restore: to a UTC time, a backup, or just before a migration"),
    ActionEntry("pitr-drill", "J", "backups", ("pitr", "drill"),
                "PITR drill: restore to a target into a scratch copy; the live cluster runs on"),
    ActionEntry("prune", "P", "backups", ("backup", "prune"), "Delete backups past retention"),
    ActionEntry("abort", "A", "canary", ("canary", "abort"), "Abort the canary (weight 0, scale to 0)"),
    ActionEntry("resolve", "V", "migrations", ("migrate", "resolve"),
                "Resolve a failed migration (as applied or rolled back)"),
    ActionEntry("migrate-rollback", "B", "migrations", ("migrate", "rollback"),
                "Roll back a migration deploy: restore the database backup"),
    ActionEntry("deploy", "t", "build", ("deploy",), "Deploy a version (plan, confirm, switch with zero downtime)"),
    ActionEntry("canary-start", "s", "build", ("canary", "start"),
                "Start a canary beside stable at the configured weight"),
    ActionEntry("step", "w", "build", ("canary", "step"),
                "Step the canary's weight (e.g. 10, 25, 50, 100) with pauses"),
    ActionEntry("promote", "o", "build", ("canary", "promote"), "Promote the canary to stable"),
    ActionEntry("scale", "plus", "build", ("scale",), "Scale stable to a number of replicas"),
    ActionEntry("canary-watch", "W", "canary", ("canary", "watch"),
                "Watch the running canary: the same checks, rolling back by the rules"),
    ActionEntry("lock-break", "L", "build", ("lock", "break"),
                "Break the release lock (someone else's, or a dead process's)"),
    ActionEntry("adopt", "a", "build", ("revision", "adopt"),
                "Adopt what runs as a new revision (after a change outside the console)"),
)
BY_KIND = {entry.kind: entry for entry in ACTIONS}


def commands() -> dict[tuple[str, ...], str]:
    """Every CLI command an action has -> its kind."""
    return {words: entry.kind for entry in ACTIONS for words in (entry.command, entry.also) if words}


def groups() -> dict[str, dict[str, str]]:
    """CLI group -> {sub-command: kind}, e.g. migrate -> {deploy: migrate, ...}."""
    grouped: dict[str, dict[str, str]] = {}
    for words, kind in commands().items():
        if len(words) == 2:
            grouped.setdefault(words[0], {})[words[1]] = kind
    return grouped
