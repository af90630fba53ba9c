"""The ``cachekit`` command line: ``plugins``, ``doctor``, ``keygen`` and ``demo``.

    cachekit plugins [--json]      what is installed and what each plugin provides
    cachekit doctor [--json]       the configuration cachekit sees, checked
    cachekit keygen [--bytes N]    a fresh master key, for CACHEKIT_MASTER_KEY
    cachekit demo                  a slow function behind @cache, on the L1 default

Reports go to stdout, progress and errors to stderr. A :class:`CachekitError`
ends the command with its code and message on one line (exit status 1), never a
traceback. Secrets (master and signing keys, URL passwords) are never printed:
``doctor`` shows only their length and whether they are valid.

Only the standard library and cachekit itself are used; each command imports
what it needs when it runs, so ``cachekit keygen`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from cachekit.cli._common import one_line, version
from cachekit.errors import CachekitError

__all__ = ["build_parser", "main"]

#: The floor of cachekit.signing.MIN_KEY_BYTES, repeated here so keygen imports nothing.
MIN_KEY_BYTES = 32
MAX_KEY_BYTES = 1024

_Handler = Callable[[argparse.Namespace], int]


# --- cachekit keygen ---------------------------------------------------------------------


def _key_bytes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of bytes, got {text!r}"
        ) from None
    if n < MIN_KEY_BYTES:
        raise argparse.ArgumentTypeError(
            f"a master key must be at least {MIN_KEY_BYTES} bytes (got {n}); "
            f"the default, {MIN_KEY_BYTES}, gives 64 hex characters"
        )
    if n > MAX_KEY_BYTES:
        raise argparse.ArgumentTypeError(f"at most {MAX_KEY_BYTES} bytes (got {n})")
    return n


def _cmd_keygen(args: argparse.Namespace) -> int:
    import secrets

    print(secrets.token_hex(args.bytes))
    return 0


# --- the other commands, imported when they run ---------------------------------------------


def _cmd_plugins(args: argparse.Namespace) -> int:
    from cachekit.cli import _plugins

    return _plugins.run(args)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from cachekit.cli import _doctor

    return _doctor.run(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from cachekit.cli import _demo

    return _demo.run(args)


# --- the parser ----------------------------------------------------------------------------


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"must be between 0 and 60 seconds, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _non_negative_seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _key_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="cachekit",
        formatter_class=formatter,
        description="cachekit: a function-result cache (in-process L1, optional shared L2).",
        epilog=(
            "examples:\n"
            "  cachekit demo                        see @cache at work (no Redis needed)\n"
            "  cachekit doctor                      check what cachekit sees in this environment\n"
            "  cachekit plugins                     list installed plugins and what they provide\n"
            "  export CACHEKIT_MASTER_KEY=$(cachekit keygen)\n"
            "\n"
            "Run `cachekit COMMAND --help` for the options of a command."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"cachekit {version()} (Python {sys.version.split()[0]})",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = sub.add_parser(
        "plugins",
        formatter_class=formatter,
        help="list installed plugins, what they provide, and load errors",
        description=(
            "List every cachekit plugin: the core's built-in one and each entry point of the\n"
            "'cachekit' group, with its distribution and version, the hooks it implements,\n"
            "the backends (URL schemes), serializers and encryptors it provides, the error\n"
            "of any plugin that failed to load or provides nothing (the others keep working;\n"
            "-v adds the traceback), and every name two plugins claim (E043).\n"
            "\n"
            "exit status: 0 every plugin loaded and no name is claimed twice; 1 a plugin\n"
            "failed to load or provides nothing (E042), or two plugins claim one name (E043);\n"
            "2 wrong usage."
        ),
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    _add_verbose(p, f"also print the traceback of each plugin that failed to load; {_VERBOSE_HELP}")
    p.set_defaults(handler=_cmd_plugins)

    p = sub.add_parser(
        "doctor",
        formatter_class=formatter,
        help="check the configuration cachekit sees; exit 1 on a problem",
        description=(
            "Show the configuration cachekit sees (versions, CACHEKIT_* variables; secrets\n"
            "only as their length and validity, URL passwords redacted), validate it, name\n"
            "the backend that would be used and from which variable, check that a plugin\n"
            "serves its URL scheme and that the backend answers a ping, and report plugins\n"
            "that failed to load. Exit status: 0 when everything is fine, 1 on a problem\n"
            "(warnings alone do not fail)."
        ),
    )
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    p.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=3.0,
        metavar="SECONDS",
        help="how long to wait for the backend's ping (default: 3)",
    )
    _add_verbose(p)
    p.set_defaults(handler=_cmd_doctor)

    p = sub.add_parser(
        "keygen",
        formatter_class=formatter,
        help="print a new random master key (hex) for CACHEKIT_MASTER_KEY",
        description=(
            "Print a new random key, hex-encoded, on stdout and nothing else, so that\n"
            "\n"
            "  export CACHEKIT_MASTER_KEY=$(cachekit keygen)\n"
            "\n"
            "works. The key comes from the operating system's CSPRNG (secrets.token_hex).\n"
            "Keep it out of version control; whoever holds it can read encrypted entries."
        ),
    )
    p.add_argument(
        "--bytes",
        type=_key_bytes,
        default=MIN_KEY_BYTES,
        metavar="N",
        help=f"key length in bytes, at least {MIN_KEY_BYTES} (default: {MIN_KEY_BYTES} = 64 hex "
        "characters)",
    )
    _add_verbose(p)
    p.set_defaults(handler=_cmd_keygen)

    p = sub.add_parser(
        "demo",
        formatter_class=formatter,
        help="watch @cache turn a slow function into a fast one (L1 only, no Redis)",
        description=(
            "Decorate a deliberately slow function with @cache, call it for a few keys\n"
            "(misses: the function runs), then call the same keys again (hits: served from\n"
            "the in-process L1), and show the timings, cache_info() and copy safety.\n"
            "Runs on the embedded default: no Redis, no environment needed."
        ),
    )
    p.add_argument(
        "--keys",
        type=_key_count,
        default=5,
        metavar="N",
        help="how many distinct keys to call (default: 5)",
    )
    p.add_argument(
        "--delay",
        type=_non_negative_seconds,
        default=0.3,
        metavar="SECONDS",
        help="how long the slow function takes per call (default: 0.3)",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show progress on stderr")
    _add_verbose(p)
    p.set_defaults(handler=_cmd_demo)
    return parser


_VERBOSE_HELP = "log cachekit's own messages to stderr (-v: INFO, -vv: DEBUG)"


def _add_verbose(command: argparse.ArgumentParser, help: str = _VERBOSE_HELP) -> None:
    """-v/--verbose after the command too (`cachekit doctor -vv`), as before it."""
    command.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,  # keeps a `cachekit -v doctor` given before the command
        help=help,
    )


def _configure_logging(verbosity: int) -> None:
    if verbosity <= 0:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("cachekit")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: _Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose)
    try:
        return handler(args)
    except CachekitError as exc:
        print(f"cachekit: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cachekit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cachekit plugins | head`: the reader left. Silence the flush at exit.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
