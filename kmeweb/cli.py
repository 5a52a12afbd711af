"""Flask commands: create-admin (later issues add worker, scheduler, seed-demo, kme-sim)."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext

from kmeweb.extensions import db


@click.command("create-admin")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "viewer"]), default="admin")
@click.option("--name", default="")
@click.option(
    "--password",
    envvar="KMEWEB_ADMIN_PASSWORD",
    default=None,
    help="Password; prompted for on a terminal, generated otherwise.",
)
@click.option("--generate", is_flag=True, help="Generate a password instead of prompting.")
def create_admin_command(
    email: str, role: str, name: str, password: str | None, generate: bool
) -> None:
    """Create an admin account and print its password if one was generated."""
    from kmeweb.auth import services
    from kmeweb.errors import DomainError

    if password is None and not generate and click.get_text_stream("stdin").isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user, password_used = services.create_admin(db.session, email, password, role, name)
    except DomainError as err:
        raise click.ClickException(err.message) from err
    db.session.commit()
    click.echo(f"created {user.role} {user.email}")
    if password is None:
        click.echo(f"password: {password_used}")


@click.command("ensure-demo-admin")
@click.option("--email", default="admin@example.com")
def ensure_demo_admin_command(email: str) -> None:
    """Create the demo admin if no account exists yet, and print how to sign in.

    The generated password is kept in instance/demo-admin.txt (mode 0600, never in
    the repository) so every `make run` can print it again.
    """
    from flask import current_app

    from kmeweb.auth import services

    saved = Path(current_app.instance_path) / "demo-admin.txt"
    if saved.exists():
        saved_email, _, saved_password = saved.read_text().strip().partition(" ")
        user = services.get_by_email(db.session, saved_email)
        if user is not None and user.check_password(saved_password):
            click.echo(f"{saved_email} / {saved_password}")
            return
    if services.count_admins(db.session):
        click.echo("your existing account (flask create-admin EMAIL adds one)")
        return
    user, password = services.create_admin(db.session, email, None, "admin", "Demo admin")
    db.session.commit()
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(f"{user.email} {password}\n")
    saved.chmod(0o600)
    click.echo(f"{user.email} / {password}")


@click.command("worker")
@click.option("--queue", "queues", multiple=True, help="Queues to serve (default: all).")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--with-scheduler/--without-scheduler", default=True)
@click.option("--name", default=None)
@with_appcontext
def worker_command(queues: tuple[str, ...], burst: bool, with_scheduler: bool, name: str | None):
    """Run an RQ worker (queues knox, default, maintenance) with its scheduler."""
    from flask import current_app

    from kmeweb.operations.queue import QUEUES, run_worker

    app = current_app._get_current_object()  # noqa: SLF001
    run_worker(app, queues or QUEUES, burst=burst, with_scheduler=with_scheduler, name=name)


def register_cli(app: Flask) -> None:
    app.cli.add_command(worker_command)
    app.cli.add_command(create_admin_command)
    app.cli.add_command(ensure_demo_admin_command)
