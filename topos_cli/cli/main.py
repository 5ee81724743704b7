"""The `topos` root command. One module per verb; this file only registers them."""

from __future__ import annotations

from typing import Annotated

import typer

from topos_cli import __version__
from topos_cli.cli import align as align_cmd
from topos_cli.cli import augment as augment_cmd
from topos_cli.cli import export as export_cmd
from topos_cli.cli import generate_geo as generate_geo_cmd
from topos_cli.cli import generate_tex as generate_tex_cmd
from topos_cli.cli import manifest as manifest_cmd
from topos_cli.cli import metrics as metrics_cmd
from topos_cli.cli import render as render_cmd
from topos_cli.cli import retopo as retopo_cmd
from topos_cli.cli import run as run_cmd
from topos_cli.cli import template as template_cmd
from topos_cli.cli import textures as textures_cmd
from topos_cli.cli import train as train_cmd
from topos_cli.cli.common import EXIT_CODES

app = typer.Typer(
    name="topos",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    help="topos: 3D heads in one fixed, studio-style mesh topology. Each command reads and writes files, "
    "so commands chain in shell pipelines and recipes.",
    epilog=EXIT_CODES,
)


def _version(value: bool) -> None:
    if value:
        print(f"topos {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """topos: 3D heads in one fixed mesh topology."""


app.add_typer(template_cmd.app, name="template")
app.command("augment", epilog=augment_cmd.EPILOG, no_args_is_help=True)(augment_cmd.augment)
app.command("run", epilog=run_cmd.EPILOG, no_args_is_help=True)(run_cmd.run)
app.command("render", epilog=render_cmd.EPILOG, no_args_is_help=True)(render_cmd.render)
app.command("textures", epilog=textures_cmd.EPILOG, no_args_is_help=True)(textures_cmd.textures)
app.command("retopo", epilog=retopo_cmd.EPILOG, no_args_is_help=True)(retopo_cmd.retopo)
app.command("generate-geo", epilog=generate_geo_cmd.EPILOG, no_args_is_help=True)(generate_geo_cmd.generate_geo)
app.add_typer(train_cmd.app, name="train")
app.command("align", epilog=align_cmd.EPILOG, no_args_is_help=True)(align_cmd.align)
app.command("metrics", epilog=metrics_cmd.EPILOG, no_args_is_help=True)(metrics_cmd.metrics)
app.add_typer(manifest_cmd.app, name="manifest")
app.command("export", epilog=export_cmd.EPILOG, no_args_is_help=True)(export_cmd.export)
app.command("animate", epilog=export_cmd.ANIMATE_EPILOG, no_args_is_help=True)(export_cmd.animate)
app.command("generate-tex", epilog=generate_tex_cmd.EPILOG, no_args_is_help=True)(generate_tex_cmd.generate_tex)
app.command("generate", epilog=generate_tex_cmd.GENERATE_EPILOG, no_args_is_help=True)(generate_tex_cmd.generate)


def main() -> None:
    """The `topos` console script: the app, with parse errors as one line (exit 2) instead of a usage box."""
    import sys

    try:  # typer >= 0.20 vendors click and raises its own copies of click's exceptions
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover - older typer on real click
        from click import exceptions as cx

    try:
        code = app(standalone_mode=False)
    except cx.NoArgsIsHelpError as exc:  # `topos augment` alone: the help, and click's exit code (2)
        exc.show()
        sys.exit(exc.exit_code)
    except cx.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except cx.ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
