"""The operator's keymap: binding id -> key(s), checked before the console starts and applied through
Textual's keymap (App.set_keymap), so the footer, the palette and the `?` help all show it.

It comes from `[keys]` in release.toml and from $XDG_CONFIG_HOME/release-console/keymap.toml. Both
may exist: keymap.toml wins, id by id. release.toml is the team's file (one per deployment, shared on
the bastion or kept with the code); keymap.toml is the operator's own, and keys are a personal habit.
So the team sets defaults and each operator overrides what their fingers want.

A bad keymap is a config error (exit 2) naming the file, the binding id and what to do: an unknown
id, a key Textual does not know, or a key that another binding active at the same time already has.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from textual.binding import Binding, BindingType
from textual.keys import Keys, _character_to_key  # the normalisation App.set_keymap applies

from services.core.config import ConfigError, ReleaseConfig, flatten_keys, xdg_config_path

KEYMAP_NAME = "keymap.toml"
MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
SEE = "see 'Keys' in docs/operations.md"


def keymap_path(env: Mapping[str, str] = os.environ) -> Path:
    return xdg_config_path(env).with_name(KEYMAP_NAME)


def load_keymap(config: ReleaseConfig, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """release.toml's [keys] overridden id by id by keymap.toml, normalised and checked."""
    team = _checked(config.keys, config.source, "keys.")
    path = keymap_path(env)
    personal = _checked(_read(path), path, "") if path.is_file() else {}
    keymap = {**team, **personal}
    problems = clashes(keymap)
    if problems:
        # Reported against the file that moved one of the clashing bindings: keymap.toml when it did.
        mine = [(binding_id, message) for binding_id, message in problems if binding_id in personal]
        if mine:
            raise ConfigError(path, mine)
        raise ConfigError(config.source, [(f"keys.{binding_id}", message) for binding_id, message in problems])
    return keymap


def _read(path: Path) -> dict[str, str]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return flatten_keys(raw)
    except OSError as err:
        raise ConfigError(path, [("file", f"cannot read: {err.strerror}")]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, [("syntax", str(err))]) from None
    except ValueError as err:
        raise ConfigError(path, [("keys", str(err))]) from None


def _checked(keymap: Mapping[str, str], path: Path | None, prefix: str) -> dict[str, str]:
    """Known ids, known keys; the keys normalised as Textual does ("?" -> "question_mark")."""
    known = defaults()
    problems: list[tuple[str, str]] = []
    normalised: dict[str, str] = {}
    for binding_id, keys in keymap.items():
        if binding_id not in known:
            close = difflib.get_close_matches(binding_id, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append((prefix + binding_id, f"unknown binding id; {hint}the console's `?` help and {SEE} "
                                                  "list the ids"))
            continue
        parts = [key.strip() for key in keys.split(",")]
        bad = [key for key in parts if not valid_key(key)]
        if bad or not keys.strip():
            shown = f"{bad[0]!r} is not a key name" if bad else "no key given"
            problems.append((prefix + binding_id, f'{shown}: use e.g. "r", "R", "ctrl+r", "f5", "plus", '
                                                  f'"question_mark", several separated by commas; {SEE}'))
            continue
        normalised[binding_id] = ",".join(_character_to_key(key) if len(key) == 1 else key for key in parts)
    if problems:
        raise ConfigError(path, problems)
    return normalised


@cache
def _key_names() -> frozenset[str]:
    names = {_character_to_key(chr(code)) for code in range(32, 127)}
    names.update(key.value.rsplit("+", 1)[-1] for key in Keys)
    return frozenset(names)


def valid_key(key: str) -> bool:
    *modifiers, base = key.split("+") if key != "+" else ["+"]
    return set(modifiers) <= MODIFIERS and (len(base) == 1 or base in _key_names())


# --- the bindings a keymap may move, by where they are active together ------------------------


def layers() -> dict[str, list[Sequence[BindingType]]]:
    """Bindings active at the same time: the app's, the main screen's and the focused pane's; or one modal's."""
    from console.app_keys import APP_BINDINGS
    from console.screens.help import HelpScreen
    from console.screens.logs import LogsScreen
    from console.screens.main import MainScreen
    from console.screens.resume import ResumeModal
    from widgets.build_log import BuildLogPane
    from widgets.confirm import ConfirmModal
    from widgets.params import ParamsModal

    return {"the main screen": [APP_BINDINGS, MainScreen.BINDINGS, BuildLogPane.BINDINGS],
            "the confirmation": [ConfirmModal.BINDINGS], "the parameters form": [ParamsModal.BINDINGS],
            "the resume offer": [ResumeModal.BINDINGS], "the help": [HelpScreen.BINDINGS],
            "the logs screen": [APP_BINDINGS, LogsScreen.BINDINGS, BuildLogPane.BINDINGS]}


def _ours(bindings: Sequence[BindingType]) -> list[Binding]:
    return [b for b in bindings if isinstance(b, Binding) and b.id]


@cache
def defaults() -> dict[str, str]:
    """Every binding id the console has, with its default key(s)."""
    return {b.id: b.key for nodes in layers().values() for node in nodes for b in _ours(node) if b.id}


@cache
def reserved() -> dict[str, str]:
    """Textual's own keys, which no binding of ours may be moved onto: key -> what it does."""
    from textual.app import App
    from textual.screen import Screen
    from textual.widgets import DataTable, OptionList

    from widgets.build_log import BuildLog

    taken = {App.COMMAND_PALETTE_BINDING: "the command palette"}
    for node, where in ((App, "the app"), (Screen, "every screen"), (DataTable, "the tables"),
                        (OptionList, "the audit list"), (BuildLog, "the build log")):
        for key, bindings in node._merge_bindings().key_to_bindings.items():
            taken.setdefault(key, f"{bindings[0].description or bindings[0].action} in {where}")
    return taken


def clashes(keymap: Mapping[str, str]) -> list[tuple[str, str]]:
    """(binding id, why) for each moved binding whose key another binding active with it has."""
    problems: dict[str, str] = {}
    for layer, nodes in layers().items():
        holders: dict[str, list[str]] = {}
        for node in nodes:
            for binding in _ours(node):
                assert binding.id is not None
                for key in keymap.get(binding.id, binding.key).split(","):
                    holders.setdefault(key.strip(), []).append(binding.id)
        for key, ids in holders.items():
            moved = [i for i in ids if i in keymap]
            for binding_id in moved:
                others = [i for i in ids if i != binding_id]
                if others:
                    problems.setdefault(binding_id, f"{key!r} is also {others[0]}'s key on {layer}; "
                                                    "give one of them another key")
                elif key in reserved():
                    problems.setdefault(binding_id, f"{key!r} is taken by Textual ({reserved()[key]}); "
                                                    "pick another key")
    return sorted(problems.items())
