"""The options and argument types the commands share, and the small parsers and printers they use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click


def _refuse_empty(value, fail) -> None:
    # `--dest "$UNSET"` must be a mistake, not the manifest's own destination (production)
    if isinstance(value, str) and not value.strip():
        fail("must not be empty (an unset variable?)")


class _Path(click.Path):
    def convert(self, value, param, ctx):
        _refuse_empty(value, lambda msg: self.fail(msg, param, ctx))
        return super().convert(value, param, ctx)


class _Text(click.types.StringParamType):
    def convert(self, value, param, ctx):
        _refuse_empty(value, lambda msg: self.fail(msg, param, ctx))
        return super().convert(value, param, ctx)


class _Seconds(click.types.FloatParamType):
    """A finite number of seconds in [1, 86400]: `nan` would retry forever, `-1` never."""

    name = "seconds"

    def convert(self, value, param, ctx):
        import math

        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds) or not 1 <= seconds <= 86400:
            self.fail(f"must be a number of seconds from 1 to 86400; got {value!r}", param, ctx)
        return seconds


class _BaseUrl(_Text):
    """An http(s) URL that paths are appended to: a bad one is a command-line mistake (exit 2)."""

    name = "url"

    def convert(self, value, param, ctx):
        from hubpub.urls import check_url

        value = super().convert(value, param, ctx)
        try:
            return check_url(value, base=True)
        except ValueError as e:
            self.fail(str(e), param, ctx)


PATH, TEXT, SECONDS, BASE_URL = _Path(path_type=Path), _Text(), _Seconds(), _BaseUrl()

def format_options(command):
    """`--no-<format>` for each format of `hubpub.formats`; the command takes them as `**skip`."""
    from hubpub.formats import FORMATS

    for fmt in reversed(FORMATS):
        command = click.option(f"--no-{fmt.name}", f"skip_{fmt.name}", is_flag=True,
                               help=f"Build no {fmt.title} ({fmt.suffix}) files.")(command)
    return command


def skipped(skip: dict) -> tuple[str, ...]:
    return tuple(name.removeprefix("skip_") for name, on in skip.items() if on)


notebooks_option = click.option(
    "--notebooks", "notebooks_out", type=PATH, default=None,
    help="The usage notebooks' folder, a subfolder per destination [default: DIST/notebooks].")
manifest_option = click.option(
    "--manifest", "manifest_path", type=PATH, default="collection.yaml",
    show_default=True, help="The collection manifest.")


public_url_option = click.option(
    "--public-url", type=BASE_URL, default=None, metavar="URL",
    help="The http(s) address the destination is read from [default: the manifest's public_url_base for its "
         "destination, https://storage.googleapis.com/BUCKET/PREFIX for another bucket].")


def notebooks_note(result) -> None:
    if result.notebooks:
        click.echo(f"notebooks: {len(result.notebooks)} written to {result.notebooks[0].parent}: commit and push "
                   "them, so each doc's Colab link opens its notebook")


def verified_note(result) -> None:
    if result.verified is not None:
        v = result.verified
        click.echo(f"verified: {v.handle} loads with hub.KerasLayer and matches its build (max |Δ| {v.max_abs:.1e})")


MAX_PARITY_SIZE = 4096


def check_sizes(sizes: tuple[tuple[int, int], ...], minimum: int) -> None:
    for h, w in sizes:
        if not (minimum <= h <= MAX_PARITY_SIZE and minimum <= w <= MAX_PARITY_SIZE):
            raise click.BadParameter(f"{h} {w}: height and width must be between {minimum} (the model's total "
                                     f"stride) and {MAX_PARITY_SIZE} pixels", param_hint="--size")


def byte_size(text: str) -> int:
    """`16G`, `500M`, `1024` -> bytes."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    number, unit = text.strip().upper().rstrip("IB") or "0", ""
    if number[-1:] in units:
        number, unit = number[:-1], number[-1]
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise click.BadParameter(f"expected a size like 16G, 500M or 1048576; got {text!r}") from None
    if value <= 0:
        raise click.BadParameter(f"must be positive; got {text!r}")
    return value


# `--shard auto`: the variables an orchestrator sets on each of its N copies, (index, count, index base)
SHARD_VARIABLES = (
    ("JOB_COMPLETION_INDEX", "HUBPUB_SHARD_COUNT", 0),  # a Kubernetes Indexed Job; the Job sets the count
    ("CI_NODE_INDEX", "CI_NODE_TOTAL", 1),  # GitLab CI's `parallel:`
)


def parse_shard(text: str | None, environ=None) -> tuple[int, int] | None:
    """`K/N` (1-based), or `auto`: the shard an orchestrator's variables say (`SHARD_VARIABLES`)."""
    import os

    if not text:
        return None
    if text == "auto":
        environ = os.environ if environ is None else environ
        for index, count, base in SHARD_VARIABLES:
            if index in environ:
                if count not in environ:
                    raise click.BadParameter(f"auto: {index} is set but {count} is not (the number of shards)",
                                             param_hint="--shard")
                text = f"{environ[index].strip()}/{environ[count].strip()}"
                try:
                    k, n = (int(x) for x in text.split("/"))
                except ValueError:
                    raise click.BadParameter(f"auto: expected whole numbers in {index} and {count}; got "
                                             f"{text!r}", param_hint="--shard") from None
                if n < 1:
                    raise click.BadParameter(f"auto: {count}={n}; the number of shards must be at least 1",
                                             param_hint="--shard")
                if not base <= k < n + base:
                    raise click.BadParameter(f"auto: {index}={k} is out of range for {count}={n} (expected "
                                             f"{base} to {n - 1 + base})", param_hint="--shard")
                text = f"{k + 1 - base}/{n}"
                break
        else:
            names = " or ".join(f"{i} and {c}" for i, c, _ in SHARD_VARIABLES)
            raise click.BadParameter(f"auto: none of the shard variables is set ({names})", param_hint="--shard")
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected K/N, like 2/8; got {text!r}", param_hint="--shard") from None
    if not 1 <= k <= n:
        raise click.BadParameter(f"K must be between 1 and N; got {text!r}", param_hint="--shard")
    return k, n


def checkpoint_overrides(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, source = item.partition("=")
        if not sep or not name or not source:
            raise click.BadParameter(f"expected VARIANT=PATH_OR_URL; got {item!r}", param_hint="--checkpoint")
        out[name] = source
    return out


def parse_kinds(text: str) -> tuple[str, ...]:
    from hubpub.manifest import KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise click.BadParameter(f"kinds must be among {', '.join(KINDS)}; got {text!r}", param_hint="--kinds")
    return kinds


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
