"""`release-console`: opens the console, or runs the same services headless for CI and scripts.

Exit codes: 0 ok, 1 the operation failed, 2 bad config or usage, 3 declined or cancelled,
4 the environment's release lock is held by someone else, 5 a canary or a deploy the rules rolled back
(the post-deploy monitor).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.version import VersionAction, version, version_asked

if TYPE_CHECKING:
    from services.core.config import ReleaseConfig
    from services.core.container import Services
    from services.core.events import ConfirmationNeeded, Event

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DECLINED, EXIT_LOCKED, EXIT_ROLLED_BACK = 0, 1, 2, 3, 4, 5


def top_parser(add_help: bool = True) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="release-console", description=__doc__.splitlines()[0], add_help=add_help)
    top.add_argument("--config", help="path to release.toml (default: ./release.toml, then XDG config)")
    top.add_argument("--sandbox", action="store_true", help="run on the simulated world: no infrastructure")
    top.add_argument("--seed", type=int, default=7, help="sandbox seed")
    top.add_argument("--time-scale", type=float, default=30.0, help="sandbox time runs this much faster")
    top.add_argument("--reset", action="store_true",
                     help="with --sandbox: seed its world anew (it is kept between commands under the state dir)")
    top.add_argument("--json", action="store_true", help="JSON output (JSON lines for operations)")
    return top


def parser(with_params: bool = True, config: ReleaseConfig | None = None,
           suggested: Mapping[str, Mapping[str, str]] | None = None,
           only: str | None = None) -> argparse.ArgumentParser:
    """Every command. Without params (for --help short of an action) no service is imported: fast.
    With `only` (an action kind, or "" for none), only that action's params are built: the command
    line names it, and the other 25 actions' parameters cost start-up for nothing.

    `config` gives the defaults an action's --help shows that come from it ("default 30, from
    recovery.health_tries"); without one, --help names where they come from.
    `suggested`: per action kind, values the sandbox offers for its parameters (factory.suggested_params);
    a parameter offered one is not required. Real mode has none: its defaults never come from the sandbox.
    """
    from console.action_table import ACTIONS, groups

    top = top_parser()
    # Not in top_parser: its quick pre-scan in _main would take an action's own `--version TAG`.
    top.add_argument("--version", action=VersionAction)
    sub = top.add_subparsers(dest="command")
    status = sub.add_parser("status", help="environments: version, replicas, lock holder, drift")
    status.add_argument("--env")
    status.add_argument("--check-drift", action="store_true",
                        help="exit 1 when what runs differs from what the console recorded (for cron and CI)")
    health = sub.add_parser("health", help="probe each environment's API, PostgreSQL and Redis; exit 1 unless all ok")
    health.add_argument("--env")
    cfg = sub.add_parser("config", help="config check | locate | diff").add_subparsers(dest="config_command",
                                                                                       required=True)
    cfg.add_parser("check", help="validate and print the config, resolved and masked")
    cfg.add_parser("locate", help="print where the config is looked for")
    config_diff = cfg.add_parser("diff", help="two environments side by side: flags, log level, URLs (host and "
                                 "database only), target, replicas, canary; differences marked *")
    config_diff.add_argument("left", help="an environment, e.g. staging")
    config_diff.add_argument("right", help="another, e.g. production")
    config_diff.add_argument("--changed", action="store_true", help="only the settings that differ")
    audit = sub.add_parser("audit", help="audit verify | tail | repair | resend").add_subparsers(
        dest="audit_command", required=True)
    audit.add_parser("verify", help="check the chain (with --env: the shared trail in the database)").add_argument(
        "--env", help="check the environment's shared trail instead of this bastion's log")
    tail = audit.add_parser("tail", help="the last records (with --env: the shared trail, every bastion's)")
    tail.add_argument("--env", help="read the environment's shared trail instead of this bastion's log")
    tail.add_argument("--limit", type=int, default=50)
    audit.add_parser("repair", help="cut a torn last line (kept as evidence), and audit the repair")
    audit.add_parser("resend", help="send the shared trail again what this log sent it and it no longer holds"
                                    " (after a point-in-time restore)").add_argument("--env", required=True)
    journal = sub.add_parser("journal", help="journal list | resume ID | abandon ID")
    journal_sub = journal.add_subparsers(dest="journal_command", required=True)
    journal_sub.add_parser("list", help="recent and interrupted operations")
    resume = journal_sub.add_parser("resume", help="resume an interrupted operation at its step")
    resume.add_argument("op_id")
    _confirm_flags(resume)
    abandon = journal_sub.add_parser("abandon", help="abandon an interrupted operation, with a reason")
    abandon.add_argument("op_id")
    abandon.add_argument("--reason", required=True)
    completion = sub.add_parser("completion", help="print the shell completion script, e.g. "
                                "eval \"$(release-console completion bash)\" in ~/.bashrc")
    completion.add_argument("shell", choices=("bash", "zsh"))
    logs = sub.add_parser("logs", help="the app's log lines (stable and canary, prefixed), cleaned and masked")
    logs.add_argument("--env", required=True)
    logs.add_argument("--role", choices=("stable", "canary"), help="one role only (default: both)")
    logs.add_argument("--since", default="10m", help="how far back: 30s, 10m, 2h, 1d or all (default 10m)")
    logs.add_argument("--follow", action="store_true", help="go on printing new lines until ctrl-c")
    usage = sub.add_parser("top", help="CPU and memory per container or pod of the app")
    usage.add_argument("--env", required=True)
    history = sub.add_parser("history", help="an environment's revisions: image, digest, who, when, migration, backup")
    history.add_argument("--env", required=True)
    readers = {"migrate": ["status", "lint"], "canary": ["trace"], "lock": ["status"], "backup": ["list"],
               "pitr": ["check"]}
    group_parsers = {name: sub.add_parser(name, help=f"{name} {' | '.join([*members, *readers.get(name, [])])}")
                     .add_subparsers(dest="group_command", required=True) for name, members in groups().items()}
    for name in ("status", "lint"):
        group_parsers["migrate"].add_parser(name, help=f"migration {name}").add_argument("--env", required=True)
    trace = group_parsers["canary"].add_parser("trace", help="a canary's decision trace as an incident timeline")
    trace.add_argument("--op", help="the canary operation's id (default: the latest canary)")
    trace.add_argument("--format", choices=("md", "json"), default="md")
    trace.add_argument("--out", help="write <op>.md and <op>.json into this directory instead of printing")
    group_parsers["lock"].add_parser("status", help="who holds each environment's release lock")
    from console import dev_cli

    dev_cli.add_parser(sub, _confirm_flags)
    listing = group_parsers["backup"].add_parser("list", help="backups in every store: age, size, verified, pinned")
    listing.add_argument("--env")
    pitr_check = group_parsers["pitr"].add_parser("check", help="archiving works, the stanza, the newest backups and"
                                                  " the recovery point; exit 1 with the reason when broken")
    pitr_check.add_argument("--env", required=True)
    for entry in ACTIONS:
        for words in (entry.command, entry.also):
            if words:
                into = group_parsers[words[0]] if len(words) == 2 else sub
                _action_parser(into, words[-1], entry.kind, entry.title,
                               with_params and only in (None, entry.kind), config,
                               (suggested or {}).get(entry.kind, {}))
    _json_after_any_command(top)
    return top


def _json_after_any_command(command: argparse.ArgumentParser) -> None:
    """`--json` is a top-level flag that every sub-command accepts too: `status --json` as `--json status`."""
    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                child.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                                   help="JSON output (JSON lines for operations)")
                _json_after_any_command(child)


def _action_parser(subparsers: Any, command: str, kind: str, title: str, with_params: bool,
                   config: ReleaseConfig | None = None, suggested: Mapping[str, str] | None = None) -> None:
    action = subparsers.add_parser(command, help=title)
    if not with_params:
        action.set_defaults(action_kind=kind, params_built=False)
        return
    from services.catalog import all_actions

    action.set_defaults(action_kind=kind)
    action.add_argument("--env", required=True)
    for param in all_actions()[kind].params:  # each param of the action is a flag of the same name
        if param.switch:
            action.add_argument(f"--{param.name.replace('_', '-')}", dest=f"flag_{param.name}", action="store_true",
                                help=param.help)
            continue
        suggestion = (suggested or {}).get(param.name, "")
        hint = f"sandbox default {suggestion}" if suggestion else param.hint(config)  # as the TUI's form shows it
        help_text = param.help + (f" ({hint})" if hint else "")
        default = param.default or suggestion
        action.add_argument(f"--{param.name.replace('_', '-')}", dest=f"flag_{param.name}", help=help_text,
                            metavar=param.name.upper(), default=default or None,
                            required=param.required and not default)
    action.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    action.add_argument("--reason", help="override reason, recorded in the audit log")
    _confirm_flags(action)


def _help_short_of_an_action(argv: Sequence[str]) -> bool:
    """`--help` for the console or a group: answered from the action table, without the services."""
    return bool({"-h", "--help"} & set(argv)) and not _named_kind(_words(argv))


def _invoked_kind(rest: Sequence[str]) -> str | None:
    """The action kind the command's words name ("" for a command that is no action); None for
    `completion`, which prints every action's parameters."""
    words = _words(rest)
    return None if words[:1] == ("completion",) else _named_kind(words)


def _words(argv: Sequence[str]) -> tuple[str, ...]:
    return tuple(word for word in argv if not word.startswith("-"))


def _named_kind(words: tuple[str, ...]) -> str:
    """The action kind the first one or two words name as a command, or ""."""
    from console.action_table import commands

    actions = commands()
    return next((actions[words[:n]] for n in (2, 1) if words[:n] in actions), "")


def _config_for_help(quick: argparse.Namespace) -> ReleaseConfig | None:
    """The config an action's --help reads its defaults from, as the command would load it; None when
    it does not load (its error is for running the command, not for reading its help)."""
    from services import factory
    from services.core.config import ConfigError

    try:
        return factory.load_config(quick.config, quick.sandbox)
    except ConfigError:
        return None


def _confirm_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--yes", action="store_true", help="answer yes to non-production confirmations")
    command.add_argument("--confirm-env", help="type the environment name to confirm production actions")


def main(argv: Sequence[str] | None = None) -> int:
    """Every user error ends in a message and its exit code; anything else in one line and a log."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit: a reader gone (`| head -1`) is handled below
        if argv is None:  # the process's own command line (the entry point): the process ends now
            _ending()
        return code
    except BrokenPipeError:
        _quiet_stdout()  # the reader had enough: no more output, no complaint at exit
        return EXIT_OK
    except KeyboardInterrupt:
        print("\ninterrupted: anything left running is in the journal (release-console journal list)",
              file=sys.stderr)
        return EXIT_DECLINED
    except Exception as err:  # noqa: BLE001 - the last resort: a bug, said in one line, never a traceback
        return _unexpected(err)


def _ending() -> None:
    """The command is done and every file, connection and client it used is closed: what the process
    made (some 50,000 objects once psycopg, pydantic and the services are in) goes with it. Frozen,
    it is skipped by the collection the interpreter runs on the way out, which took longer than a
    whole step of a migrate deploy (0.1-0.5 s); the operating system frees the memory at once.
    Only for the process's own command: a caller in the same process (a test) keeps collecting."""
    import gc

    gc.freeze()


def _quiet_stdout() -> None:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _unexpected(err: BaseException) -> int:
    """One line on stderr, the traceback in a private (0600) file for the bug report."""
    import traceback

    from services.core.masking import mask

    text = str(mask("".join(traceback.format_exception(err))))
    where = "nowhere (could not write a log)"
    try:
        from services.core.journal import state_dir
        from services.core.private import open_private

        path = state_dir() / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        with open_private(path, "x", encoding="utf-8") as log:
            log.write(text)
        where = str(path)
    except OSError:
        pass
    said = " ".join(str(mask(str(err))).split())[:300]
    print(f"error: unexpected {type(err).__name__}: {said}\n"
          f"  this is a bug in release-console; the traceback is in {where}", file=sys.stderr)
    return EXIT_FAILED


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quick, rest = top_parser(add_help=False).parse_known_args(argv)
    if version_asked(rest):
        print(f"release-console {version()}")
        return EXIT_OK
    if quick.reset and not quick.sandbox:
        print("error: --reset starts the sandbox's world anew; use it with --sandbox", file=sys.stderr)
        return EXIT_USAGE
    if not rest:
        # The console itself: Textual first, so the first frame does not wait for pydantic.
        from console.app import run_app

        return run_app(quick.config, sandbox=quick.sandbox, seed=quick.seed, time_scale=quick.time_scale,
                       reset=quick.reset)
    if _help_short_of_an_action(rest):  # rest: without the top-level options and their values (--config PATH)
        parser(with_params=False).parse_args(argv)  # prints the help and exits
    from services import factory
    from services.core.audit import AuditUnavailable, SharedUnavailable
    from services.core.config import ConfigError
    from services.core.locks import LockHeld
    from services.core.masking import MaskedStream
    from services.core.operations import StepFailed

    # The one exit for text: every line any command prints is masked on its way out.
    sys.stdout, sys.stderr = MaskedStream(sys.stdout), MaskedStream(sys.stderr)
    asked_help = bool({"-h", "--help"} & set(argv))
    suggested = factory.suggested_params(quick.sandbox)
    every_command = parser(config=_config_for_help(quick) if asked_help else None, suggested=suggested,
                           only=None if asked_help else _invoked_kind(rest))
    args = every_command.parse_args(argv)
    if not getattr(args, "params_built", True):  # an action the words did not name: every one's params
        every_command = parser(suggested=suggested)
        args = every_command.parse_args(argv)
    if args.command == "completion":  # from the parser itself, by shtab: no config needed
        import shtab

        print(shtab.complete(every_command, shell=args.shell))
        return EXIT_OK
    try:
        config = factory.load_config(args.config, args.sandbox)
    except ConfigError as err:
        print(f"config error:\n{err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        services = factory.build(config, sandbox_mode=args.sandbox, seed=args.seed, time_scale=args.time_scale,
                                 reset=args.reset)
        try:
            return _dispatch(args, services)
        finally:
            services.close()  # Kubernetes clients, HTTP clients, connections: nothing left open at exit
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except LockHeld as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_LOCKED
    except StepFailed as err:  # a service a read-only command needs is out of reach: say so, no traceback
        print(f"error: {err}", file=sys.stderr)
        for option in err.next_options:
            print(f"  next: {option}", file=sys.stderr)
        return EXIT_FAILED
    except (AuditUnavailable, SharedUnavailable) as err:  # nothing ran unaudited: say what to do
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace, services: Services) -> int:
    command = args.command
    if command == "status":
        return _status(args, services)
    if command == "health":
        return _health(args, services)
    if command == "config":
        return _config(args, services)
    if command == "audit":
        return _audit(args, services)
    if command == "journal":
        return _journal(args, services)
    if command == "canary" and args.group_command == "trace":
        return _trace(args, services)
    if command == "history":
        return _history(args, services)
    if command == "logs":
        return _logs(args, services)
    if command == "top":
        return _top(args, services)
    if command == "lock" and args.group_command == "status":
        return _lock_status(args, services)
    if command == "migrate" and args.group_command in ("status", "lint"):
        return _migrations(args, services)
    if command == "backup" and args.group_command == "list":
        return _backups(args, services)
    if command == "pitr" and args.group_command == "check":
        return _pitr_check(args, services)
    if command == "dev":
        from console import dev_cli

        return dev_cli.dispatch(args, services, _run, _interrupt_cancels)
    from services.catalog import build_operation

    params = dict(p.split("=", 1) for p in args.param if "=" in p)
    params.update({k.removeprefix("flag_"): v for k, v in vars(args).items() if k.startswith("flag_") and v})
    bad = [p for p in args.param if "=" not in p]
    if bad:
        print(f"error: --param takes KEY=VALUE, got {bad[0]!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        operation = build_operation(services, args.action_kind, args.env, params)
    except ValueError as err:  # bad input: refused before anything starts
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    operation.override_reason = args.reason
    return _run(args, services, operation)


def _run(args: argparse.Namespace, services: Services, operation: Any, start_at: int = 0,
         state: dict[str, Any] | None = None) -> int:
    from services.core.events import Outcome

    render = _unbroken(_json_line if args.json else _text_line)
    cancel = threading.Event()
    with _interrupt_cancels(cancel):
        result = services.runner.run(operation, render, _cli_confirm(args), cancel, start_at=start_at, state=state)
    if not args.json:
        print(f"full log: {services.log_path(operation.id)}", file=sys.stderr)
    if result.outcome is Outcome.SUCCEEDED:
        return EXIT_OK
    if result.detail.startswith("rolled back"):  # a canary the rules rolled back: CI gates on this
        return EXIT_ROLLED_BACK
    if "locked by" in result.detail:
        return EXIT_LOCKED
    return EXIT_DECLINED if result.outcome in (Outcome.DECLINED, Outcome.CANCELLED) else EXIT_FAILED


@contextmanager
def _interrupt_cancels(cancel: threading.Event) -> Iterator[None]:
    """ctrl-c cancels the operation as ctrl+x does in the TUI: the running step stops what it runs
    and the operation ends cancelled, saying so. A second ctrl-c leaves at once (resumable)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\ncancelling: stopping what runs now (ctrl-c again to leave at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _cli_confirm(args: argparse.Namespace) -> Any:
    def confirm(question: ConfirmationNeeded) -> str | None:
        if question.timeout_s is not None:
            return _timed_answer(question)
        if question.free_text:
            if args.reason:
                return str(args.reason)
            if not sys.stdin.isatty():
                print(f"needs an override reason: {question.prompt} (no terminal; pass --reason)", file=sys.stderr)
                return None
            return input(f"{question.prompt}\nreason: ")
        if question.expected is not None:
            if args.confirm_env is not None:
                return str(args.confirm_env)
        elif args.yes:
            return "yes"
        if not sys.stdin.isatty():
            hint = f"--confirm-env {question.expected}" if question.expected else "--yes"
            print(f"needs confirmation: {question.prompt} (no terminal; pass {hint})", file=sys.stderr)
            return None
        answer = input(f"{question.prompt} {'' if question.expected else '[y/N] '}")
        if question.expected is None:
            return "yes" if answer.strip().lower() in ("y", "yes") else None
        return answer

    return confirm


def _timed_answer(question: ConfirmationNeeded) -> str | None:
    """A question with a default: asked on a terminal until its deadline, else the default at once."""
    default = "yes" if question.default_yes else None
    if not sys.stdin.isatty():
        print(f"{question.prompt} (no terminal: the default, {default or 'no'})", file=sys.stderr)
        return default
    print(f"{question.prompt} [y/n, default {default or 'no'} in {question.timeout_s:g}s] ", end="", flush=True)
    ready, _, _ = select.select([sys.stdin], [], [], question.timeout_s)
    if not ready:
        print(f"\nno answer: {default or 'no'}")
        return default
    answer = sys.stdin.readline().strip().lower()
    return default if not answer else "yes" if answer in ("y", "yes") else None


def _unbroken(render: Callable[[Event], None]) -> Callable[[Event], None]:
    """Output piped into `head` that stops reading must not stop an operation halfway (a rollback,
    a promotion): the operation goes on to its end, journaled and audited, with no more output."""

    def write(event: Event) -> None:
        try:
            render(event)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    return write


def _json_line(event: Event) -> None:
    print(json.dumps(event.to_json(), default=str), flush=True)


def _text_line(event: Event) -> None:
    from services.core.oplog import event_lines  # the same lines the operation's log file keeps

    for line in event_lines(event):
        print(line, flush=True)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _status(args: argparse.Namespace, services: Services) -> int:
    from services.environments.overview import environment_rows

    envs = [args.env] if args.env else list(services.config.environments)
    rows = environment_rows(services, envs)
    lines = [f"{'ENVIRONMENT':<18} {'VERSION':<14} {'READY':<7} {'CANARY':<12} LOCK"]
    for row in rows:
        name = row.env + (" [PROD]" if row.production else "")
        canary = f"{row.canary_version}@{row.canary_weight}%" if row.canary_version else "-"
        lines.append(f"{name:<18} {row.version:<14} {row.ready:<7} {canary:<12} {row.lock or 'free'}")
        if row.error:
            lines.append(f"  {row.env}: {row.error}")
        lines += [f"  {row.env}: DRIFT {line}" for line in row.drift]
    if any(row.drift for row in rows):
        lines.append("  (release-console revision adopt --env E records what runs as a revision)")
    _emit(args, [r.__dict__ for r in rows], "\n".join(lines))
    # An unknown lock fails the check too: a script must not read "cannot tell" as "free".
    failed = any(r.error or (r.lock or "").startswith("unknown") for r in rows)
    return EXIT_FAILED if failed or (args.check_drift and any(r.drift for r in rows)) else EXIT_OK


def _health(args: argparse.Namespace, services: Services) -> int:
    """A read, like `status`: not audited. Exit 0 only when every dependency of every environment is ok."""
    from services.environments.health import check

    envs = [args.env] if args.env else list(services.config.environments)
    results = [check(services, env) for env in envs]
    lines = []
    for result in results:
        lines.append(f"{result.env}: {result.status.upper()}")
        for c in result.checks:
            version = f" {c.reading.version}" if c.reading.version else ""
            lines.append(f"  {c.dependency:<9} {c.status:<5}{version}")
            lines += [f"    ! {reason}" for reason in c.reasons]
            lines += [f"    {fact}" for fact in c.reading.facts]
    _emit(args, [r.as_json() for r in results], "\n".join(lines))
    return EXIT_OK if all(r.status == "ok" for r in results) else EXIT_FAILED


def _trace(args: argparse.Namespace, services: Services) -> int:
    from services.canary import trace

    try:
        record = services.journal.get(args.op) if args.op else trace.latest(services.journal)
    except KeyError:
        record = None
    if record is None or record.kind not in trace.CANARY_KINDS:
        print(f"error: {'no canary operation ' + args.op if args.op else 'no canary has checked anything yet'}"
              " (release-console journal list shows the operations)", file=sys.stderr)
        return EXIT_USAGE
    if args.out:
        for path in trace.export(record, Path(args.out)):
            print(path)
    else:
        print(trace.as_json(record) if args.format == "json" else trace.as_markdown(record), end="")
    return EXIT_OK


def _logs(args: argparse.Namespace, services: Services) -> int:
    """Without --follow: what is kept since --since, then exit. With it: until ctrl-c, then exit 0."""
    from services.environments.logs import follow_logs, parse_since

    try:
        since = parse_since(args.since)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)
    if args.follow and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda signum, frame: cancel.set())
    try:
        for line in follow_logs(services, args.env, role=args.role, since_s=since, follow=args.follow,
                                cancel=cancel):
            print(json.dumps(line.as_json()) if args.json else line.render(), flush=args.follow)
    finally:
        if args.follow and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
    return EXIT_OK


def _top(args: argparse.Namespace, services: Services) -> int:
    from services.environments.logs import resource_use, usage_json, usage_lines

    report = resource_use(services, args.env)
    _emit(args, usage_json(report), "\n".join(usage_lines(report)))
    return EXIT_OK


def _history(args: argparse.Namespace, services: Services) -> int:
    from services.release.deploy import history_lines

    revisions = services.revisions(args.env).list()
    _emit(args, [r.__dict__ for r in revisions], "\n".join(history_lines(revisions)) or f"{args.env}: no revisions yet")
    return EXIT_OK


def _config(args: argparse.Namespace, services: Services) -> int:
    from services.core.config import references, xdg_config_path

    if args.config_command == "diff":
        return _config_diff(args, services)
    if args.config_command == "locate":
        paths = {"--config": args.config, "cwd": "./release.toml", "xdg": str(xdg_config_path()),
                 "in use": str(services.config.source)}
        _emit(args, paths, "\n".join(f"{k:<9} {v}" for k, v in paths.items()))
        return EXIT_OK
    from console.keymap import keymap_path, load_keymap
    from services.core.masking import mask

    keymap = load_keymap(services.config)  # [keys] and keymap.toml, checked as at start: a bad one is exit 2
    resolved = mask(services.config.model_dump(mode="json"))  # ${VAR} values too, in plain-string fields
    refs = references(services.config.source) if services.config.source else {}
    personal = keymap_path()
    text = [f"config OK: {services.config.source}",
            f"keymap OK: {len(keymap)} key(s) moved" + (f" ({personal} read)" if personal.is_file() else "")]
    text += _flatten(resolved, refs)
    _emit(args, {"ok": True, "source": str(services.config.source), "config": resolved, "references": refs,
                 "keymap": keymap}, "\n".join(text))
    return EXIT_OK


def _config_diff(args: argparse.Namespace, services: Services) -> int:
    from services.environments.config_diff import diff

    rows = [row for row in diff(services.config, args.left, args.right) if row.differs or not args.changed]
    width = max([len(row.key) for row in rows] + [3])
    side = max([len(row.left) for row in rows] + [len(args.left)])
    lines = [f"  {'KEY':<{width}}  {args.left.upper():<{side}}  {args.right.upper()}"]
    lines += [f"{'*' if row.differs else ' '} {row.key:<{width}}  {row.left:<{side}}  {row.right}" for row in rows]
    count = sum(row.differs for row in rows)
    lines.append(f"{count} setting(s) differ between {args.left} and {args.right}" if count
                 else f"{args.left} and {args.right} have the same settings")
    _emit(args, {"left": args.left, "right": args.right,
                 "rows": [{**row.__dict__, "differs": row.differs} for row in rows]}, "\n".join(lines))
    return EXIT_OK


def _flatten(node: Any, refs: dict[str, list[str]], key: str = "") -> list[str]:
    from services.core.masking import mask

    if isinstance(node, dict):
        return [line for k, v in node.items() for line in _flatten(v, refs, f"{key}.{k}" if key else k)]
    if isinstance(node, list) and node and all(isinstance(v, dict) for v in node):  # [[notify.routes]]
        return [line for i, v in enumerate(node) for line in _flatten(v, refs, f"{key}.{i}")]
    source = f"   <- ${{{refs[key][0]}}}" if key in refs else ""
    return [f"  {key} = {json.dumps(mask(node, key.rsplit('.', 1)[-1]))}{source}"]


def _shared_trail(audit: Any, env: str) -> str:
    return f"shared trail for {env} ({audit.shared.where(env) if audit.shared else ''})"


def _audit(args: argparse.Namespace, services: Services) -> int:
    audit = services.audit
    if args.audit_command == "tail":
        records = audit.tail_shared(args.env, args.limit) if args.env else audit.tail(args.limit)
        trail = _shared_trail(audit, args.env) if args.env else str(audit.path)
        _emit(args, records, "\n".join([f"# {trail}", *(_audit_line(r) for r in records)]))
        return EXIT_OK
    if args.audit_command == "resend":
        sent = audit.resend(args.env)
        _emit(args, {"resent": sent},
              f"re-sent {sent} record(s) to the {_shared_trail(audit, args.env)}" + (" (audited)" if sent else ""))
        return EXIT_OK
    if args.audit_command == "repair":
        repair = audit.repair()
        if repair is None:
            _emit(args, {"repaired": False}, f"nothing to repair: the last line of {audit.path} is whole")
            return EXIT_OK
        _emit(args, {"repaired": True, **repair.__dict__},
              f"cut the torn line {repair.line} ({repair.size} bytes) from {audit.path}; kept in {repair.evidence};"
              " the repair is audited")
        return EXIT_OK
    result = audit.verify_shared(args.env) if args.env else audit.verify(services.config.environments)
    where = f" at {'row' if args.env else 'line'} {result.line}" if result.line else ""
    lines = [f"audit chain OK: {result.records} records ({result.trail})" if result.ok
             else f"audit chain BROKEN{where}: {result.problem} ({result.trail})"]
    lines += [f"note: {result.note}"] if result.note else []
    if result.pending:
        lines.append(f"pending: {result.pending} record(s) kept here that the shared trail has not taken yet")
    _emit(args, result.__dict__, "\n".join(lines))
    return EXIT_OK if result.ok else EXIT_FAILED


def _audit_line(record: dict[str, Any]) -> str:
    who = record["who"]
    user = f"{who['user']}@{who['host']}" if who.get("host") else who["user"]
    return f"{record['when']} {user:<16} {record['env']:<12} {record['action']:<9} {record['outcome']}"


def _journal(args: argparse.Namespace, services: Services) -> int:
    if args.journal_command == "list":
        interrupted = {r.id for r in services.journal.interrupted()}
        records = services.journal.recent()
        _emit(args, [{**r.__dict__, "steps": [s.__dict__ for s in r.steps], "interrupted": r.id in interrupted}
                     for r in records],
              "\n".join(f"{r.id}  {r.kind:<9} {r.env:<12} "
                        f"{'INTERRUPTED' if r.id in interrupted else r.status:<11} {r.title}" for r in records))
        return EXIT_OK
    try:
        record = services.journal.get(args.op_id)
    except KeyError:
        print(f"error: no operation {args.op_id!r} in the journal ({services.journal.path});"
              " release-console journal list shows the operations and their ids", file=sys.stderr)
        return EXIT_USAGE
    if args.journal_command == "abandon":
        services.journal.abandon(record.id, args.reason)
        services.audit.append(record.env, "abandon", {"op_id": record.id}, "abandoned", args.reason)
        print(f"abandoned {record.id}: {args.reason}")
        return EXIT_OK
    from services.catalog import build_operation

    try:
        operation = build_operation(services, record.kind, record.env, record.params)
    except ValueError as err:  # its parameters are no longer accepted (a newer console, a config change)
        print(f"error: cannot resume {record.id}: {err}", file=sys.stderr)
        return EXIT_USAGE
    operation.id = record.id
    return _run(args, services, operation, start_at=record.resume_index, state=record.state)


def _migrations(args: argparse.Namespace, services: Services) -> int:
    from services.core.ports import MigrationsDirError

    try:
        return _migrations_of(args, services)
    except MigrationsDirError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _migrations_of(args: argparse.Namespace, services: Services) -> int:
    from services.migrations.deploy import lint_pending

    if args.group_command == "lint":
        findings = lint_pending(services, args.env)
        _emit(args, [{**f.__dict__, "level": f.level} for f in findings], "\n".join(
            f"{f.label:<8} {f.migration}:{f.line} {f.rule}\n  {f.message}"
            + (f"\n  database: {f.note}" if f.note else "") + f"\n  safer: {f.safer}" for f in findings)
            or "no findings")
        return EXIT_FAILED if any(f.blocking for f in findings) else EXIT_OK
    records = services.database(args.env).status()
    lines = [f"{'MIGRATION':<44} {'STATE':<14} {'APPLIED':<17} TOOK"]
    for r in records:
        applied = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.started_at)) if r.started_at else "-"
        took = f"{r.finished_at - r.started_at:.2f}s" if r.started_at and r.finished_at else "-"
        lines.append(f"{r.name:<44} {r.state:<14} {applied:<17} {took}" + (f"\n  logs: {r.logs}" if r.logs else ""))
    _emit(args, [r.__dict__ for r in records], "\n".join(lines))
    bad = [r for r in records if r.state in ("failed", "edited")]
    return EXIT_FAILED if bad else EXIT_OK


def _backups(args: argparse.Namespace, services: Services) -> int:
    from services.backups.catalog import list_backups

    entries = list_backups(services, args.env)
    now = services.clock.now()
    lines = [f"{'ENV':<12} {'BACKUP':<17} {'AGE':>5} {'SIZE':>9} {'STORE':<8} {'STATE':<9} VERIFIED / PINNED"]
    for e in entries:
        verified = (f"verified {time.strftime('%Y-%m-%d %H:%M', time.gmtime(e.verified_at))}, RTO {e.restore_s:.0f}s"
                    if e.verified_at and e.restore_s is not None else "not verified")
        pinned = f"; pinned {e.pinned}" if e.pinned else ""
        lines.append(f"{e.env:<12} {e.id:<17} {(now - e.created) / 86400:>4.0f}d {e.size / 1e6:>7.1f}MB {e.store:<8} "
                     f"{'complete' if e.complete else 'PARTIAL':<9} {verified}{pinned}")
    _emit(args, [e.__dict__ for e in entries], "\n".join(lines))
    return EXIT_OK


def _pitr_check(args: argparse.Namespace, services: Services) -> int:
    from services.backups import pitr

    report = pitr.check(services, args.env, (lambda line: None) if args.json else
                        (lambda line: print(f"  {line}", file=sys.stderr)))
    _emit(args, report.as_json(), "\n".join(pitr.describe(report)))
    return EXIT_OK if report.ok else EXIT_FAILED


def _lock_status(args: argparse.Namespace, services: Services) -> int:
    from services.core.locks import LockUnknown

    shown: dict[str, Any] = {}
    lines = []
    for env in services.config.environments:
        try:
            held = services.locks.holder(env)
        except LockUnknown as err:  # never "free": nobody can tell
            shown[env] = {"state": "unknown", "error": str(err)}
            lines.append(f"{env:<12} unknown: {err}")
            continue
        shown[env] = {"state": "held", **held.__dict__} if held else {"state": "free"}
        lines.append(f"{env:<12} {held.describe() if held else 'free'}")
    _emit(args, shown, "\n".join(lines))
    return EXIT_FAILED if any(v["state"] == "unknown" for v in shown.values()) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
