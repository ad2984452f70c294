"""The ``hf_spider`` command line: thin typer commands that parse, call the library, and print.

Errors print one line and exit non-zero; ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import __version__

app = typer.Typer(
    name="hf_spider",
    help="Which pre-trained model on the Hugging Face Hub should I fine-tune for my task?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
hub_app = typer.Typer(help="Run a local, Hub-compatible server (offline tests, demos, air-gapped sites).",
                      no_args_is_help=True)
app.add_typer(hub_app, name="hub")

console = Console()
err_console = Console(stderr=True)
_state = {"verbose": False}


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"hf_spider {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    _state["verbose"] = verbose


@hub_app.command("serve")
def hub_serve(
    root: Annotated[Path, typer.Option(help="Folder holding the repositories (created if missing; kept across restarts).")] = Path("./hubdata"),
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8080,
    token: Annotated[
        str | None, typer.Option(envvar="HF_SPIDER_HUB_TOKEN", help="Token required for writes (default: open).")
    ] = None,
) -> None:
    """Serve the Hub HTTP API on 127.0.0.1 so the official clients work through HF_ENDPOINT."""
    from .hub.server import HubServer

    server = HubServer(root, port=port, token=token)
    console.print(f"Local Hub serving [bold]{root.resolve()}[/] at [bold]{server.url}[/]")
    console.print(f"Point the clients at it:  export HF_ENDPOINT={server.url}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("Stopped.")
    finally:
        server.server_close()


def main() -> None:
    """Console-script entry point: run the app, turning exceptions into one clear line."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        sys.exit(130)
    except Exception as e:
        if _state["verbose"]:
            err_console.print_exception()
        else:
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            err_console.print(f"[bold red]Error:[/] {message}  [dim](--verbose for the traceback)[/]",
                              highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
