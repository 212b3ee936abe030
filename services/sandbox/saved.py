"""The sandbox world kept between commands, so CLI calls and the TUI act on one world.

It is saved as JSON (0600) under the state dir after every operation and when the console
quits, and loaded at the next start; before an operation, and on each poll of the TUI, a copy
saved by another process since is taken in. Two processes running operations at once: the last
to finish wins. `--sandbox --reset` seeds a new world. One file per seed: `--seed 3` is
another world.

JSON validated by pydantic on the way in, never pickle: a saved world is data, not code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import Base64Bytes, TypeAdapter, ValidationError

from services.core.config import ConfigError
from services.core.private import open_private
from services.sandbox.expand import SimDatabase, adopt_databases, databases
from services.sandbox.world import EnvState, World

FORMAT = 1


@dataclass
class SavedWorld:
    format: int
    seed: int
    now: float  # the simulated clock when saved: the next process goes on from here
    random_state: tuple[int, tuple[int, ...], float | None]
    images: dict[str, str]
    objects: dict[str, tuple[Base64Bytes, float, dict[str, str]]]
    notifications: list[str]
    envs: dict[str, EnvState]
    schemas: dict[str, SimDatabase]  # expand/contract's simulated tables, once an operation made them


_ADAPTER = TypeAdapter(SavedWorld)


class UnreadableWorld(ConfigError):
    """The saved world cannot be read back at the start: said with its path and how to start anew (exit 2)."""

    def __init__(self, path: Path, problem: str) -> None:
        anew = "start a new one with: release-console --sandbox --reset"
        super().__init__(path, [("sandbox world", f"{problem}; {anew}")])


def world_path(state: Path, seed: int) -> Path:
    return state / f"sandbox-world-seed{seed}.json"


class KeptWorld:
    """A World tied to its file: load or seed, take in others' saves, save."""

    def __init__(self, world: World, path: Path, seen: int | None = None) -> None:
        self.world, self.path = world, path
        self._seen = seen  # the file's mtime_ns when last read or written by us

    @classmethod
    def open(cls, path: Path, seed: int, time_scale: float, origin: float | None) -> tuple[KeptWorld, bool]:
        """The saved world if there is one (and whether it was), else a newly seeded one."""
        world = World(seed, time_scale, origin)
        kept = cls(world, path)
        if not path.exists():
            return kept, False
        kept._take(kept._read(), first=True)
        return kept, True

    def refresh(self) -> None:
        """Take in a copy another process saved since we last read or wrote ours. One that cannot be
        read (edited by hand) is passed over: this process goes on with its world and saves it next."""
        if self._changed():
            try:
                self._take(self._read(), first=False)
            except UnreadableWorld:
                pass

    def save(self, only_if_unchanged: bool = False) -> None:
        """Write the world atomically. `only_if_unchanged`: keep another process's newer save."""
        if only_if_unchanged and self._changed():
            return
        with self.world.lock:
            saved = SavedWorld(FORMAT, self.world.seed, self.world.clock.now(), self.world.random.getstate(),
                               dict(self.world.images), dict(self.world.objects), list(self.world.notifications),
                               dict(self.world.envs), databases(self.world))
            data = _ADAPTER.dump_json(saved)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with open_private(partial, "wb") as out:
            out.write(data)
        os.replace(partial, self.path)
        self._seen = self._mtime()

    def _mtime(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def _changed(self) -> bool:
        return self._mtime() not in (None, self._seen)

    def _read(self) -> SavedWorld:
        self._seen = self._mtime()
        try:
            saved = _ADAPTER.validate_json(self.path.read_bytes())
        except (OSError, ValidationError) as err:
            problem = str(err).splitlines()[0] if isinstance(err, ValidationError) else str(err)
            raise UnreadableWorld(self.path, f"cannot be read ({problem})") from None
        if saved.format != FORMAT or saved.seed != self.world.seed:
            raise UnreadableWorld(self.path, f"holds a world of format {saved.format}, seed {saved.seed}; "
                                             f"this console reads format {FORMAT}, seed {self.world.seed}")
        return saved

    def _take(self, saved: SavedWorld, first: bool) -> None:
        """In place: the adapters made so far hold the world's objects, not copies."""
        world = self.world
        with world.lock:
            world.random.setstate(saved.random_state)
            world.clock.go_on_from(saved.now, first)
            world.images.clear()
            world.images.update(saved.images)
            world.objects.clear()
            world.objects.update(saved.objects)
            world.notifications[:] = saved.notifications
            for name, env in saved.envs.items():
                if name in world.envs:
                    vars(world.envs[name]).update(vars(env))
                else:
                    world.envs[name] = env
            adopt_databases(world, saved.schemas)
