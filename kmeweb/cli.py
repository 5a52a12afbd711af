"""Flask commands: accounts, worker, scheduler, sync, purge-history, recount-profiles,
seed-demo, seed-scale, kme-sim."""

from __future__ import annotations

import time
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

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
    """Create an account that signs in with a password, and print the password if one was
    generated (Admin › Accounts adds accounts too, and can send a set-password link)."""
    from kmeweb.auth import accounts
    from kmeweb.auth.models import SignIn

    if password is None and not generate and click.get_text_stream("stdin").isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    added = _or_fail(
        lambda: accounts.add_account(
            db.session,
            "cli",
            email,
            name,
            role,
            SignIn.PASSWORD,
            accounts.Credential.PASSWORD,
            password,
        )
    )
    db.session.commit()
    click.echo(f"created {added.account.role} {added.account.email}")
    if password is None and added.secret is not None:
        click.echo(f"password: {added.secret.value}")


def _or_fail(action):
    """Run a service call; a refusal (DomainError) becomes a one-line ClickException."""
    from kmeweb.errors import DomainError

    try:
        return action()
    except DomainError as err:
        raise click.ClickException(err.message) from err


def _account_or_fail(email: str):
    """The account for `email`, or a one-line ClickException."""
    from kmeweb.auth import services

    user = services.get_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"no account for {email}")
    return user


@click.command("set-password")
@click.argument("email")
@click.option("--generate", is_flag=True, help="Generate a password instead of prompting.")
def set_password_command(email: str, generate: bool) -> None:
    """Give an account a new password; every session it has ends."""
    from kmeweb.auth import accounts

    user = _account_or_fail(email)
    password = None
    if not generate:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    secret = _or_fail(
        lambda: accounts.reset_password(
            db.session, "cli", user, accounts.Credential.PASSWORD, password
        )
    )
    db.session.commit()
    click.echo(f"password changed for {user.email}; its sessions have ended")
    if generate:
        click.echo(f"password: {secret.value}")


@click.command("deactivate-admin")
@click.argument("email")
@click.option("--activate", is_flag=True, help="Activate the account again instead.")
def deactivate_admin_command(email: str, activate: bool) -> None:
    """Deactivate an account (its sessions end at once), or activate it again.

    Unlike Admin › Accounts, the shell may deactivate the last active admin (it can always
    create another): it says so.
    """
    from kmeweb.auth import accounts

    user = _account_or_fail(email)
    if activate:
        accounts.activate(db.session, "cli", user)
    else:
        accounts.deactivate(db.session, "cli", user, allow_no_admin=True)
    db.session.commit()
    click.echo(f"{user.email} is {'active' if activate else 'deactivated'}")
    if not activate and not accounts.active_admins(db.session):
        click.echo("no active admin is left: `flask create-admin EMAIL` adds one", err=True)


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
@click.option(
    "--label",
    default=None,
    help="How this worker appears in kmeweb_knox_requests_total{worker} (default: host name).",
)
@with_appcontext
def worker_command(
    queues: tuple[str, ...], burst: bool, with_scheduler: bool, name: str | None, label: str | None
):
    """Run an RQ worker (queues knox, default, maintenance) with its scheduler.

    Exits 1 with a one-line message when Redis or the database does not answer at start (so
    systemd restarts it); a Redis connection lost later is retried with backoff.
    """
    from flask import current_app

    from kmeweb.operations.queue import QUEUES, run_worker_resilient
    from kmeweb.ops.metrics import set_worker_label
    from kmeweb.ops.startup import check_services

    app = current_app._get_current_object()  # noqa: SLF001
    problem = check_services(app)
    if problem:
        click.echo(f"kmeweb worker cannot start: {problem}", err=True)
        raise SystemExit(1)
    set_worker_label(label)
    _startup_sweep()
    scheduler = None
    if with_scheduler and not burst:
        from kmeweb.operations.queue import redis_connection
        from kmeweb.sync.schedule import Scheduler

        scheduler = Scheduler(app, redis_connection())
        scheduler.start_thread()
    try:
        run_worker_resilient(
            app, queues or QUEUES, burst=burst, with_scheduler=with_scheduler, name=name
        )
    finally:
        if scheduler is not None:
            scheduler.stop()


def _startup_sweep() -> None:
    """Recover at once what a killed worker left behind (the schedule repeats it every minute)."""
    from kmeweb.sync.jobs import sweep_job

    try:
        sweep_job()
    except Exception:  # noqa: BLE001 - the periodic sweep will try again
        import logging

        logging.getLogger("kmeweb").warning("startup sweep failed", exc_info=True)
    finally:
        db.session.remove()


@click.command("scheduler")
@with_appcontext
def scheduler_command() -> None:
    """Run only the scheduler (when workers run with --without-scheduler)."""
    from flask import current_app

    from kmeweb.operations.queue import redis_connection
    from kmeweb.sync.schedule import Scheduler

    Scheduler(current_app._get_current_object(), redis_connection()).run()  # noqa: SLF001


@click.command("rotate-encryption-key")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@with_appcontext
def rotate_encryption_key_command(batch_size: int) -> None:
    """Re-encrypt every stored secret with KMEWEB_ENCRYPTION_KEY.

    Old keys go in KMEWEB_ENCRYPTION_KEYS_OLD (comma-separated) for the run; one transaction
    per batch, so an interrupted run is finished by running it again. Afterwards the old keys
    can be dropped.
    """
    from kmeweb.ops.rotate import rotate_all

    try:
        report = rotate_all(
            db.session, batch_size=batch_size, progress=lambda m: click.echo(m, err=True)
        )
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    for col in report.columns:
        click.echo(
            f"{col.table}.{col.column}: {col.rotated} re-encrypted, "
            f"{col.already_current} already current"
        )
    click.echo(
        f"done: {report.rotated} re-encrypted, {report.already_current} already current; "
        "the old keys can now be removed from KMEWEB_ENCRYPTION_KEYS_OLD"
    )


@click.command("purge-history")
@click.option(
    "--budget-s",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Stop after this many seconds (0: until everything older than the retention is gone).",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=None, help="Rows per transaction."
)
@with_appcontext
def purge_history_command(budget_s: float, batch_size: int | None) -> None:
    """Delete the history older than the retention (Audit log › Retention) now.

    The same purge the scheduler runs: audit events, finished outbox changes and operations,
    in batches of one short transaction each; nothing under a legal hold or without a
    retention. Safe beside a running console and the scheduled purge.
    """
    from flask import current_app

    from kmeweb.ops.retention import purge_history

    cfg = current_app.config
    started = time.monotonic()
    report = purge_history(
        db.session,
        "cli",
        batch_size=batch_size or int(cfg["PURGE_BATCH_SIZE"]),
        budget_s=budget_s,
        pause_s=float(cfg["PURGE_PAUSE_S"]),
        progress=lambda r: click.echo(
            f"  {r.audit_events:,} audit events, {r.changes:,} changes, "
            f"{r.operations:,} operations so far",
            err=True,
        ),
    )
    if report.cutoff is None:
        reason = "a legal hold is on" if report.held else "no retention is set"
        click.echo(f"nothing purged: {reason} (Audit log › Retention)")
        return
    seconds = time.monotonic() - started
    click.echo(
        f"deleted {report.audit_events:,} audit events, {report.changes:,} changes and "
        f"{report.operations:,} operations older than {report.cutoff:%Y-%m-%d %H:%M} UTC "
        f"in {seconds:.1f} s ({report.deleted / max(seconds, 1e-6):,.0f} rows/s)"
    )
    if report.held:
        click.echo("stopped: a legal hold was switched on")
    elif not report.complete:
        click.echo("stopped at the time budget: run it again to go on")


@click.command("recount-profiles")
@click.option(
    "--check-only", is_flag=True, help="Report wrong counts without repairing them (exit 1)."
)
@with_appcontext
def recount_profiles_command(check_only: bool) -> None:
    """Count every profile's devices again and repair kept counts that are wrong.

    The Bulk Enrollment list and the profile page show each profile's kept counts (devices,
    registered, pending registration); the sweeper runs this check every minute. Safe beside
    a running console: a profile is repaired under its row lock.
    """
    from kmeweb.profiles import counts as kept_counts

    started = time.monotonic()
    if check_only:
        drift = kept_counts.check(db.session)
        db.session.rollback()
    else:
        drift = kept_counts.check_and_repair(db.session, "cli")
        db.session.commit()
    n = db.session.scalar(db.select(db.func.count()).select_from(db.metadata.tables["profile"]))
    for d in drift:
        click.echo(
            f"profile {d.name!r}: devices {d.kept[0]:,} -> {d.counted[0]:,}, "
            f"registered {d.kept[1]:,} -> {d.counted[1]:,}" + ("" if check_only else " (repaired)")
        )
    seconds = time.monotonic() - started
    if not drift:
        click.echo(f"the kept counts of all {n:,} profiles are right ({seconds:.1f} s)")
    elif check_only:
        click.echo(f"{len(drift):,} of {n:,} profiles have wrong kept counts ({seconds:.1f} s)")
        raise SystemExit(1)
    else:
        click.echo(f"repaired {len(drift):,} of {n:,} profiles ({seconds:.1f} s)")


sync_cli = AppGroup("sync", help="Sync with KME: start a pull, show status.")


@sync_cli.command("now")
@click.option("--full", is_flag=True, help="Pull everything, not only what changed.")
def sync_now_command(full: bool) -> None:
    """Start a pull now (a worker runs it)."""
    from kmeweb.sync.jobs import start_pull

    operation = start_pull(db.session, "cli", full=full)
    db.session.commit()
    click.echo(f"operation {operation.id}: {operation.label} ({operation.status})")


@sync_cli.command("status")
def sync_status_command() -> None:
    """Print the integration's sync status and each profile's."""
    from kmeweb.operations.queue import redis_connection
    from kmeweb.profiles.models import Profile
    from kmeweb.sync.status import integration_status, profile_statuses

    try:
        redis = redis_connection()
        redis.ping()
    except Exception:  # noqa: BLE001 - status works without Redis, minus the schedule
        redis = None
    status = integration_status(db.session, redis)
    if not status["configured"]:
        click.echo("integration: not configured")
        return
    click.echo(f"integration: {'active' if status['active'] else 'inactive'}")
    for key in ("last_pull_at", "last_full_pull_at", "last_push_at", "next_pull_at"):
        value = status[key]
        click.echo(f"  {key.replace('_', ' ')}: {value.isoformat() if value else '-'}")
    click.echo(f"  pending changes: {status['pending_changes']}")
    click.echo(f"  failed changes: {status['failed_changes']}")
    click.echo(f"  last error: {status['last_error'] or '-'}")
    names = dict(db.session.execute(db.select(Profile.id, Profile.name)).all())
    for profile_id, st in sorted(profile_statuses(db.session).items()):
        detail = f" ({st.message})" if st.message else ""
        click.echo(f"profile {names[profile_id]!r}: {st.state}{detail}")


@click.command("seed-demo")
@click.option("--sim-url", default="http://127.0.0.1:8765", show_default=True)
@click.option("--sim-state", default=None, help="Simulator state file (default: instance/).")
@with_appcontext
def seed_demo_command(sim_url: str, sim_state: str | None) -> None:
    """Seed the simulator's demo tenant and point an unconfigured integration at it.

    Idempotent: an existing integration is left as it is. The simulator itself is started
    by `make run` (Procfile) on the same state file.
    """
    from flask import current_app

    from kmeweb.integration.activation import activate_integration
    from kmeweb.integration.models import get_integration
    from kmeweb.integration.settings import save_settings
    from kmeweb.knox.simulator import create_simulator, get_state
    from kmeweb.knox.simulator.demo import seed_demo
    from kmeweb.sync.jobs import start_pull

    path = sim_state or str(Path(current_app.instance_path) / "kme-sim.sqlite")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    state = get_state(create_simulator(state_path=path, enable_control=True))
    try:
        creds = seed_demo(state)
    finally:
        with state.lock:
            state.close()
    if get_integration(db.session) is not None:
        click.echo("integration already configured; left as it is")
        return
    save_settings(
        db.session,
        {
            "name": "Demo KME (simulator)",
            "description": "The built-in KME simulator with a demo reseller and two uploads.",
            "auth_mode": "oauth",
            "base_url": sim_url,
            # OAuth tokens come from Samsung's global host unless told otherwise.
            "token_url": sim_url.rstrip("/") + "/ams/v1/oauth2/token",
            "client_id": creds["oauth_client_id"],
            "secret": creds["oauth_client_secret"],
            "customer_id": creds["customer_id"],
            "encryption_public_key": creds["encryption_public_key"],
            "sync_interval_s": 300,
        },
        "cli",
    )
    activate_integration(db.session, "cli")
    start_pull(db.session, "cli")  # the first pull at once, as Activate on the page does
    db.session.commit()
    click.echo(f"demo integration active against {sim_url} (customer {creds['customer_id']})")


@click.command("seed-scale")
@click.option("--uploads", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--devices", type=click.IntRange(min=0), default=1_000_000, show_default=True)
@click.option("--profiles", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option(
    "--users", type=click.IntRange(min=0), default=None, help="End users (default devices/100)."
)
@with_appcontext
def seed_scale_command(uploads: int, devices: int, profiles: int, users: int | None) -> None:
    """Fill the database with a large tenant for measurements (kmeweb/demo/scale.py says what).

    Bulk inserts (Core executemany on SQLite, COPY on PostgreSQL); each run adds its own
    uniquely named rows, so it can run on top of existing data.
    """
    from kmeweb.demo.scale import device_total, seed_scale, vacuum_analyze

    result = seed_scale(
        db.session,
        uploads=uploads,
        devices=devices,
        profiles=profiles,
        users=users,
        progress=lambda msg: click.echo(msg, err=True),
    )
    db.session.commit()
    vacuum_analyze(db.engine)
    click.echo(
        f"seed-scale run {result['run']}: {result['uploads']:,} uploads, "
        f"{result['devices']:,} devices ({result['pending_devices']:,} pending), "
        f"{result['profiles']:,} profiles, {result['users']:,} end users, "
        f"{result['resellers']:,} resellers in {result['seconds']} s "
        f"({device_total(db.session):,} devices in the database)"
    )


@click.command("oidc-encrypt-secret")
@with_appcontext
def oidc_encrypt_secret_command() -> None:
    """Encrypt the identity provider's client secret (read from standard input, or prompted
    for) with KMEWEB_ENCRYPTION_KEY; put what it prints in KMEWEB_OIDC_CLIENT_SECRET."""
    from kmeweb import crypto

    stdin = click.get_text_stream("stdin")
    if stdin.isatty():
        secret = click.prompt("Client secret", hide_input=True)
    else:
        secret = stdin.read().strip()
    if not secret:
        raise click.ClickException("no client secret given")
    click.echo(crypto.encrypt(secret))


def register_cli(app: Flask) -> None:
    app.cli.add_command(oidc_encrypt_secret_command)
    app.cli.add_command(seed_scale_command)
    app.cli.add_command(seed_demo_command)
    from kmeweb.knox.simulator.cli import kme_sim

    app.cli.add_command(kme_sim)
    app.cli.add_command(sync_cli)
    app.cli.add_command(scheduler_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(rotate_encryption_key_command)
    app.cli.add_command(purge_history_command)
    app.cli.add_command(recount_profiles_command)
    app.cli.add_command(create_admin_command)
    app.cli.add_command(set_password_command)
    app.cli.add_command(deactivate_admin_command)
    app.cli.add_command(ensure_demo_admin_command)
