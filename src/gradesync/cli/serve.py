"""`gradesync serve`: API, LTI endpoints, console and the in-process worker, in one process."""

from __future__ import annotations

import errno
import socket

import typer

DEFAULT_PORT = 8000
DEMO_SANDBOX_PORT = 8765


def port_free(host: str, port: int, option: str) -> None:
    """Stop with one clear line when the port is taken, before anything starts (binding as
    uvicorn does, so what passes here binds there)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            why = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
            from gradesync.cli._common import fail

            raise fail(
                f"cannot listen on {host}:{port}: {why}. Choose another port with {option} (or "
                "stop what uses it)."
            ) from exc


# the options only the demo uses, each with why (said when one is given without --demo)
DEMO_ONLY = {
    "sandbox_port": ("--sandbox-port", "the port of the demo's sandbox"),
    "demo_attempts": ("--demo-attempts", "how many attempts the demo simulates"),
    "demo_exit": ("--demo-exit", "whether the demo exits once its grades landed"),
}


def demo_only_given(ctx: typer.Context) -> None:
    """Refuse every demo-only option given without --demo, before anything starts: ignored,
    it would leave the user believing it took effect (bad input, exit 2)."""
    from gradesync.cli._common import bad_input, problem

    given = []
    for name, (option, why) in DEMO_ONLY.items():
        # where the value came from, read by the source's name: typer exports no
        # ParameterSource (since 0.26 it carries its own copy of click, whose members are not
        # click's), and the name is the same in every version
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "DEFAULT":
            continue
        if ctx.params[name] is False:  # a flag's other form, named as typed
            option = "--no-" + option.removeprefix("--")
        given.append(problem("--demo", "required", f"{option} needs --demo ({why})"))
    if given:
        raise bad_input(*given)


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, help="Port to listen on."),
    demo: bool = typer.Option(
        False, "--demo", help="Also run the sandbox LMS/SIS, wire them up and simulate learners."
    ),
    sandbox_port: int | None = typer.Option(
        None,
        help="With --demo: the sandbox's port (default: 8765 with the default --port, else "
        "--port + 1; 0 picks a free one).",
    ),
    demo_attempts: int = typer.Option(12, help="With --demo: how many attempts to simulate."),
    demo_exit: bool = typer.Option(
        False, help="With --demo: exit after the simulated grades landed (for scripts)."
    ),
) -> None:
    """Run gradesync (SQLite by default; migrations applied automatically on SQLite)."""
    if not demo:
        demo_only_given(ctx)
    from gradesync import logs
    from gradesync.adapters.collector import settle_for_serving
    from gradesync.adapters.open_files import raise_open_files_limit
    from gradesync.config import load_settings

    settings = load_settings()
    logs.configure("WARNING" if demo else settings.log_level, settings.log_format)
    raise_open_files_limit()  # a pool per platform: see gradesync.adapters.open_files
    port_free(host, port, "--port")
    if demo:
        from gradesync.cli._common import fail
        from gradesync.demo import DemoError, run_demo  # imports the sandbox: only here

        if sandbox_port is None:
            sandbox_port = DEMO_SANDBOX_PORT if port == DEFAULT_PORT else port + 1 if port else 0
        port_free(host, sandbox_port, "--sandbox-port")

        try:
            code = run_demo(
                settings, host, port, sandbox_port, attempts=demo_attempts, exit_after=demo_exit
            )
        except DemoError as exc:  # refused, or cannot go on: one line, no traceback
            raise fail(str(exc)) from None
        raise typer.Exit(code)
    import uvicorn  # the web stack loads only for the commands that serve

    from gradesync.cli._common import fail
    from gradesync.runtime import DatabaseInUse, Runtime
    from gradesync.web.app import create_app

    runtime = Runtime.create(settings, serving=True)
    try:
        runtime.db.check_secret_key()  # another key than the stored secrets': refuse now
        runtime.claim_database()
    except DatabaseInUse as exc:
        runtime.close()
        raise fail(str(exc)) from None
    except BaseException:
        runtime.close()
        raise
    app = create_app(runtime)
    app.state.run_worker = True  # the in-process worker (docs/operations.md)
    settle_for_serving()  # built: what the process holds now lives as long as it
    # uvicorn's own loggers go through the handler above; the access log is gradesync's
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=False,
    )
