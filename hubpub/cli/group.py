"""The `hubpub` group: logging, the exit codes, and every failure as `error:` lines."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from hubpub import __version__
from hubpub._files import in_finalizer
from hubpub.errors import HubpubError

log = logging.getLogger("hubpub")


EXIT_ERROR = 1  # bad input, configuration or outside world; a failed check
EXIT_USAGE = 2  # the command line itself: unknown option, bad option value
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class _Interrupted(Exception):
    """Ctrl-C, carried past click's own handling (which prints an empty line first)."""


class _EndOfFile(Exception):
    """An EOFError of a command, carried past click, which would take it for Ctrl-D at a prompt and say
    "interrupted": none of hubpub's commands prompts, so it is a bug (a helper process that died at its
    start, for one), raised on as it is."""

    def __init__(self, error: EOFError):
        super().__init__(str(error))
        self.error = error


# The commands that run TensorFlow here (build, verify, verify-parity, eval) import it through hubpub._tf,
# without its C++ start-up chatter, once their own checks have passed: a usage error never pays its import.


class _Group(click.Group):
    """Every failure a user can cause ends as `error: ...` lines on stderr and a documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted() from None
        except EOFError as e:
            raise _EndOfFile(e) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        previous = signal.getsignal(signal.SIGINT)
        ctrl_c = []
        if previous is signal.default_int_handler:  # an ignored SIGINT stays ignored

            def on_sigint(signum, frame):  # remembered: a library may swallow the KeyboardInterrupt
                ctrl_c.append(signum)
                if in_finalizer(frame):  # Python ignores an exception there: raised again once it is done
                    threading.Timer(0.05, signal.raise_signal, (signum,)).start()
                    return
                signal.default_int_handler(signum, frame)

            signal.signal(signal.SIGINT, on_sigint)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _EndOfFile as e:
            e.error.__suppress_context__ = True  # its own traceback, not the wrapper's
            code = _exit_code(e.error, interrupted=bool(ctrl_c))
        except Exception as e:
            code = _exit_code(e, interrupted=bool(ctrl_c))
        except (KeyboardInterrupt, _Interrupted):
            code = _exit_code(KeyboardInterrupt(), interrupted=True)
        finally:
            signal.signal(signal.SIGINT, previous)
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            if code == EXIT_INTERRUPTED:
                # A Ctrl-C that lands inside a constructor leaves a half-made object whose finaliser fails when
                # it is collected at exit (TensorFlow's ScopedTFImportGraphDefOptions has no `options` then):
                # Python's "Exception ignored in" report would follow, and bury, the error line.
                sys.unraisablehook = _ignore_unraisable
            sys.exit(code)
        return code


def _exit_code(e: BaseException, interrupted: bool) -> int:
    """Say `e` as `error:` lines and give the exit code; a bug's exception is raised on."""
    # After a Ctrl-C any failure is the Ctrl-C: TensorFlow's tracing, for one, catches the KeyboardInterrupt
    # and raises "Tried to convert 'shape' to a tensor" instead.
    if interrupted or isinstance(e, (_Interrupted, click.Abort)):
        # Every stage writes atomically: nothing half-written stays under a final name.
        click.echo("error: interrupted; finished files are kept, rerun the command to go on", err=True)
        return EXIT_INTERRUPTED
    if isinstance(e, click.UsageError):
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        return EXIT_USAGE
    if isinstance(e, HubpubError):
        for line in e.lines():
            click.echo(f"error: {line}", err=True)
        return EXIT_ERROR
    if isinstance(e, click.ClickException):  # e.g. a file option that cannot be opened
        click.echo(f"error: {e.format_message()}", err=True)
        return EXIT_ERROR
    raise e


def _ignore_unraisable(unraisable) -> None:
    """After a Ctrl-C: a finaliser's failure is the interrupt's, already said."""


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hubpub")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Build, document, verify and publish a TF-Hub style model collection."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    # Libraries' own chatter (google.auth warns about each credential source it tries) only with -vv.
    # huggingface_hub's HTTP client (httpx, httpx2 in its 2.x) logs every request at INFO ("HTTP Request: GET ...").
    for noisy in ("tensorflow", "absl", "h5py", "urllib3", "google", "nbclient", "traitlets", "jupyter_client",
                  "httpx", "httpcore", "httpx2", "httpcore2", "filelock"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.ERROR)
    for client in ("huggingface_hub", "kagglehub"):  # their warnings matter; their progress lines do not
        logging.getLogger(client).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    # ... but not huggingface_hub's line per retry of a request: hubpub says the failure once, when it gives up
    logging.getLogger("huggingface_hub.utils._http").setLevel(logging.DEBUG if verbose > 1 else logging.ERROR)
    if quiet:
        import os

        os.environ["HUBPUB_DISABLE_PROGRESS"] = "1"
        os.environ["TQDM_DISABLE"] = "1"  # the hub clients' own progress bars (kagglehub, huggingface_hub)
    if verbose > 1:
        import os

        os.environ["HUBPUB_NATIVE_LOGS"] = "1"  # TensorFlow's and LiteRT's C++ output too
    ctx.obj = {"verbose": verbose, "quiet": quiet}


def main() -> None:
    cli(prog_name="hubpub")
