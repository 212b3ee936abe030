"""`release-console dev status|up|down|restart SERVICE|logs SERVICE [--follow]|studio`: the development
compose stack ([dev] in release.toml). up, down and restart run as operations (journaled, audited);
down and restart confirm first (--yes without a terminal).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.core.container import Services


def add_parser(sub: Any, confirm_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    dev = sub.add_parser("dev", help="the development stack: status | up | down | restart SERVICE | logs SERVICE "
                                     "| studio").add_subparsers(dest="dev_command", required=True)
    dev.add_parser("status", help="each compose service's state and health (by the containers' compose labels)")
    up = dev.add_parser("up", help="start the stack, or one service of it")
    up.add_argument("service", nargs="?", help="a service of the compose file (default: all)")
    down = dev.add_parser("down", help="stop and remove the stack's containers (volumes are kept)")
    restart = dev.add_parser("restart", help="restart one service")
    restart.add_argument("service")
    for command in (up, down, restart):
        command.add_argument("--reason", help="recorded in the audit log")
        confirm_flags(command)
    logs = dev.add_parser("logs", help="one service's log")
    logs.add_argument("service")
    logs.add_argument("--follow", "-f", action="store_true", help="keep following (ctrl-c stops)")
    logs.add_argument("--tail", type=int, default=200, help="lines from the end to start with (default 200)")
    dev.add_parser("studio", help="print prisma-studio's URL (open it in a browser, or through an SSH tunnel)")


def dispatch(args: argparse.Namespace, services: Services, run: Callable[[argparse.Namespace, Services, Any], int],
             interrupts: Callable[[threading.Event], AbstractContextManager[None]]) -> int:
    """`run` is the CLI's operation runner (rendering, confirmation, exit codes); `interrupts` makes
    ctrl-c set an event (a followed log stops on it)."""
    from services.environments import dev_stack

    command = args.dev_command
    if command == "status":
        return _status(args, services)
    if command == "studio":
        print(dev_stack.studio_url(services))
        return 0
    if command == "logs":
        return _logs(args, services, interrupts)
    try:
        operation = (dev_stack.up(services, args.service) if command == "up" else dev_stack.down(services)
                     if command == "down" else dev_stack.restart(services, args.service))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    operation.override_reason = args.reason
    return run(args, services, operation)


def _status(args: argparse.Namespace, services: Services) -> int:
    from services.environments import dev_stack

    rows = dev_stack.status(services)
    studio = dev_stack.studio_url(services)
    if getattr(args, "json", False):
        print(json.dumps({"services": [row.__dict__ for row in rows], "studio_url": studio}, indent=2))
    else:
        print(f"{'SERVICE':<16} {'STATE':<11} {'HEALTH':<10} {'N':<3} IMAGE")
        for row in rows:
            print(f"{row.name:<16} {row.state:<11} {row.health or '-':<10} {row.containers:<3} {row.image or '-'}")
        print(f"prisma-studio: {studio}")
    return 0


def _logs(args: argparse.Namespace, services: Services,
          interrupts: Callable[[threading.Event], AbstractContextManager[None]]) -> int:
    from services.core.operations import Cancelled, cancelled_by
    from services.environments import dev_stack

    cancel = threading.Event()
    try:
        with interrupts(cancel), cancelled_by(cancel):
            dev_stack.logs(services, args.service, lambda line: print(line, flush=True), args.follow, args.tail)
    except Cancelled:
        pass  # ctrl-c while following: the end the operator asked for
    return 0
