"""The ``officesensor`` command: demo, serve, ingest, sensor, broker, export, import, dynamodb,
auth."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from officesensor import __version__
from officesensor.config import Settings, load_settings
from officesensor.errors import OfficeSensorError
from officesensor.logs import configure_logging, uses_json

log = logging.getLogger("officesensor")

# Flags that override settings: flag name -> settings field.
SETTING_FLAGS = {
    "mqtt_url": "--mqtt-url",
    "store": "--store",
    "http": "--http",
    "topic": "--topic",
    "window": "--window",
    "z": "--z",
    "mqtt_client_id": "--client-id",
    "mqtt_protocol": "--mqtt-protocol",
    "log_level": "--log-level",
    "log_format": "--log-format",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(
            args.config, overrides={f: getattr(args, f, None) for f in SETTING_FLAGS}
        )
        configure_logging(settings.log_level, settings.log_format)
        result: int = args.run(args, settings)
        return result
    except OfficeSensorError as exc:
        print(f"officesensor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="officesensor",
        description="Office climate over MQTT: store every reading once, spot anomalies, "
        "show a live dashboard. Settings: --config FILE, OFFICESENSOR_* variables, flags.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, run: Any, *groups: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        sub.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
        sub.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
        sub.add_argument("--log-format", help="text or json (one JSON object per line)")
        for group in groups:
            if group == "mqtt":
                sub.add_argument("--mqtt-url", help="broker, e.g. mqtt://127.0.0.1:1883")
                sub.add_argument("--mqtt-protocol", help="5 or 3.1.1")
                sub.add_argument("--client-id", dest="mqtt_client_id", help="MQTT client id")
            elif group == "ingest":
                sub.add_argument("--topic", help="topic filter (default office/metrics/+)")
                sub.add_argument("--window", help="rolling window W (default 10)")
                sub.add_argument("--z", help="anomaly threshold Z (default 2.0)")
            elif group == "store":
                sub.add_argument("--store", help="sqlite:///path.db or dynamodb://TABLE?...")
            elif group == "http":
                sub.add_argument("--http", help="HOST:PORT to serve on (default 127.0.0.1:8000)")
        return sub

    command(
        "serve",
        "Ingest from the broker and serve the dashboard.",
        run_serve,
        "mqtt",
        "ingest",
        "store",
        "http",
    )
    command(
        "ingest",
        "Ingest from the broker into the store (no web server).",
        run_ingest,
        "mqtt",
        "ingest",
        "store",
    )
    demo = command(
        "demo",
        "Everything on this machine: embedded broker, simulated sensor, ingest and dashboard.",
        run_demo,
        "ingest",
        "http",
    )
    demo.add_argument("--data-dir", type=Path, default=Path("data"), help="default: ./data")
    demo.add_argument(
        "--broker-port", type=int, default=0, help="embedded broker port (default: any free port)"
    )
    demo.add_argument("--interval", type=float, default=15.0, help="seconds between readings")
    demo.add_argument(
        "--backfill",
        default="2d",
        help="history to simulate when the store is empty (default 2d; 0 for none)",
    )
    demo.add_argument("--seed", type=int, default=None, help="random seed of the simulation")

    sensor = command(
        "sensor",
        "Publish readings from a sensor source (or, with install-service, write a systemd "
        "unit that runs it at boot).",
        run_sensor_command,
        "mqtt",
        "store",
    )
    sensor.add_argument(
        "action",
        nargs="?",
        choices=["run", "install-service"],
        default="run",
        help="run (default) or install-service",
    )
    sensor.add_argument(
        "--source",
        choices=["simulated", "sensehat", "bme280"],
        default=None,
        help="where readings come from (default: sensor.source, simulated)",
    )
    sensor.add_argument("--interval", type=float, default=15.0, help="seconds (default 15)")
    sensor.add_argument("--seed", type=int, default=None, help="random seed (simulated)")
    sensor.add_argument(
        "--sensor", default=None, help="sensor name (default: sensor.name, the host name)"
    )
    sensor.add_argument("--count", type=int, default=None, help="stop after N samples")
    sensor.add_argument(
        "--original-format",
        action="store_true",
        help="send the original sample's payloads (counter IDs, naive times)",
    )
    sensor.add_argument(
        "--backfill",
        metavar="DURATION",
        default=None,
        help="write DURATION (e.g. 30d) of history straight into --store, then exit",
    )
    service = sensor.add_argument_group("install-service")
    service.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the unit (default /etc/systemd/system/officesensor-sensor.service)",
    )
    service.add_argument(
        "--print", action="store_true", help="print the unit to standard output, write nothing"
    )
    service.add_argument(
        "--user", default=None, help="user the service runs as (default: the invoking user)"
    )
    service.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the service's working directory, holding its outbox (default: .)",
    )

    broker = command("broker", "Run the embedded MQTT 3.1.1 broker.", run_broker)
    broker.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    broker.add_argument("--port", type=int, default=1883, help="port (default 1883; 0 = any)")

    export = command("export", "Write readings as CSV.", run_export, "store")
    export.add_argument("--metric", default=None, help="only this metric")
    export.add_argument("--sensor", default=None, help="only this sensor")
    export.add_argument("--start", default=None, help="ISO 8601 time (default: the beginning)")
    export.add_argument("--end", default=None, help="ISO 8601 time (default: now)")
    export.add_argument("--output", "-o", type=Path, default=None, help="file (default stdout)")
    _transfer_flags(export, "--to", "target", "copy every reading into this DynamoDB table")

    imp = command(
        "import",
        "Read readings from CSV (as written by export) into the store.",
        run_import,
        "store",
    )
    imp.add_argument("file", type=Path, nargs="?", help="CSV file, or - for standard input")
    _transfer_flags(imp, "--from", "source", "copy an original-format DynamoDB table instead")

    dynamodb = command(
        "dynamodb",
        "DynamoDB set-up (docs/dynamodb.md): create-table makes the original sample's table "
        "(Metric S, ID N), or checks an existing one.",
        run_dynamodb,
        "store",
    )
    dynamodb.add_argument("action", choices=["create-table"], help="create-table")
    dynamodb.add_argument("--table", default=None, help="default: the store's, or OfficeSensor")
    dynamodb.add_argument(
        "--billing",
        choices=["on-demand", "provisioned"],
        default="on-demand",
        help="default on-demand",
    )
    dynamodb.add_argument("--read-units", type=int, default=5, help="provisioned (default 5)")
    dynamodb.add_argument("--write-units", type=int, default=5, help="provisioned (default 5)")

    auth = command(
        "auth",
        "Viewer accounts (docs/security.md): add-user NAME writes a salted scrypt hash to the "
        "users file; new-token prints a random token for auth.token.",
        run_auth,
    )
    auth.add_argument("action", choices=["add-user", "new-token"], help="add-user or new-token")
    auth.add_argument("name", nargs="?", help="the viewer's name (add-user)")
    auth.add_argument(
        "--file", type=Path, default=None, help="users file (default: auth.users_file)"
    )
    auth.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    return parser


# ----------------------------------------------------------------------------- commands


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from officesensor.service import serve

    _check_exposure(args, settings)
    return serve(settings, announce=_announce)


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from officesensor.ingest import Ingest
    from officesensor.service import install_stop_signals, wait_until
    from officesensor.store import open_store

    stop = threading.Event()
    install_stop_signals(stop)  # before anything starts, so a signal always shuts down cleanly
    store = open_store(settings.store, settings.tz)
    ingest = Ingest(settings, store)
    ingest.start()
    try:
        wait_until(stop)
    finally:
        ingest.stop()
        store.close()
    return 0


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from officesensor.demo import Demo

    _check_exposure(args, settings)
    return Demo(
        settings,
        data_dir=args.data_dir,
        broker_port=args.broker_port,
        interval_s=args.interval,
        backfill=args.backfill,
        seed=args.seed,
        announce=_announce,
    ).run()


def run_sensor_command(args: argparse.Namespace, settings: Settings) -> int:
    from officesensor.demo import run_sensor_cli, sensor_settings

    settings = sensor_settings(args, settings)
    if args.action == "install-service":
        return run_install_service(args, settings)
    return run_sensor_cli(args, settings)


def run_install_service(args: argparse.Namespace, settings: Settings) -> int:
    """Write (or print) the systemd unit and, when missing, its settings file. Runs nothing."""
    import getpass
    import os
    import pwd

    from officesensor.errors import ConfigError
    from officesensor.sensor.service_unit import (
        DEFAULT_UNIT_PATH,
        UnitOptions,
        enable_commands,
        render_config,
        render_unit,
    )

    data_dir = (args.data_dir or Path.cwd()).absolute()
    config_file = (args.config or data_dir / "officesensor.toml").absolute()
    user = args.user or os.environ.get("SUDO_USER") or getpass.getuser()
    if user == "root":
        user = "pi"  # the service never needs root: the i2c and gpio groups suffice
    executable = Path(sys.executable).parent / "officesensor"
    user_ids: tuple[int, int] | None = None
    try:
        entry = pwd.getpwnam(user)
        home, user_ids = Path(entry.pw_dir), (entry.pw_uid, entry.pw_gid)
    except KeyError:  # a user still to be created (useradd), or on another machine
        home = Path("/home") / user
    try:
        unit = render_unit(UnitOptions(executable.absolute(), config_file, data_dir, user, home))
    except ValueError as exc:
        raise ConfigError("--user", str(exc)) from None
    if args.print:
        print(unit, end="")
        if args.config is None:
            print(f"# settings file to create: {config_file}", file=sys.stderr)
        return 0
    output = args.output or DEFAULT_UNIT_PATH
    outbox = settings.sensor_outbox
    outbox = outbox if outbox.is_absolute() else data_dir / outbox
    try:
        if args.config is None and not config_file.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            config_file.touch(mode=0o600)  # it may hold the broker password
            config_file.write_text(render_config(settings, outbox), encoding="utf-8")
            if os.geteuid() == 0 and user_ids is not None:  # under sudo: the service's user
                os.chown(config_file, *user_ids)  # must read it
            _announce(f"wrote the settings {config_file} (review them)")
        output.write_text(unit, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            "--output",
            f"cannot write {exc.filename}: {exc.strerror} (run it with sudo, or use --print)",
        ) from None
    _announce(f"wrote the systemd unit {output}; to start it now and at every boot:")
    for command in enable_commands(output):
        print(f"    {command}", flush=True)
    return 0


def run_broker(args: argparse.Namespace, settings: Settings) -> int:
    from officesensor.broker import EmbeddedBroker
    from officesensor.service import install_stop_signals, wait_until

    stop = threading.Event()
    install_stop_signals(stop)
    broker = EmbeddedBroker(args.host, args.port)
    broker.start()
    print(f"officesensor: MQTT broker on mqtt://{broker.host}:{broker.port}", flush=True)
    try:
        wait_until(stop)
    finally:
        broker.stop()
    return 0


def _transfer_flags(sub: argparse.ArgumentParser, flag: str, dest: str, help_text: str) -> None:
    sub.add_argument(flag, dest=dest, metavar="dynamodb://TABLE?...", help=help_text)
    sub.add_argument("--checkpoint", type=Path, default=None, help="resume file (DynamoDB)")
    sub.add_argument(
        "--max-items", type=int, default=None, help="stop after N (run again to go on)"
    )
    if dest == "source":
        sub.add_argument(
            "--page-size", type=int, default=1000, help="items per Scan page and checkpoint"
        )


def run_dynamo_transfer(args: argparse.Namespace, settings: Settings) -> int:
    """``import --from dynamodb://…`` and ``export --to dynamodb://…``, with a progress line."""
    from officesensor import transfer
    from officesensor.config import dynamodb_options, parse_store
    from officesensor.errors import ConfigError
    from officesensor.progress import Progress

    url = args.source if args.run is run_import else args.target
    flag, kind = ("--from", "import") if args.run is run_import else ("--to", "export")
    try:
        if not url.startswith("dynamodb:"):
            raise ValueError("must be a dynamodb://TABLE?... URL")
        parse_store(url)
    except ValueError as exc:
        raise ConfigError(flag, str(exc)) from None
    table = dynamodb_options(url).table
    checkpoint = args.checkpoint or transfer.default_checkpoint(settings, kind, table)
    bar: Progress | None = None

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(sys.stderr, f"{kind} {table}", total, done=done)
        bar.advance(done - bar.done)

    if kind == "import":
        report = transfer.import_dynamodb(
            settings,
            url,
            checkpoint=checkpoint,
            progress=progress,
            max_items=args.max_items,
            page_size=max(1, args.page_size),
        )
    else:
        report = transfer.export_dynamodb(
            settings, url, checkpoint=checkpoint, progress=progress, max_items=args.max_items
        )
    if bar is not None:
        bar.finish()
    r = report.result
    state = "done" if report.complete else f"stopped early; run it again to continue ({checkpoint})"
    print(
        f"officesensor: {kind} {table}: {report.items} items, {r.stored} readings stored, "
        f"{r.duplicates} already there, {r.conflicts} conflicting kept aside, "
        f"{report.skipped} skipped: {state}",
        file=sys.stderr,
    )
    return 0


def run_dynamodb(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from officesensor.config import DynamoOptions, dynamodb_options
    from officesensor.store.dynamo_table import Billing, create_table

    if settings.store.startswith("dynamodb:"):
        options = dynamodb_options(settings.store)
    else:
        options = DynamoOptions("OfficeSensor")
    if args.table:
        options = dataclasses.replace(options, table=args.table)
    billing = Billing(args.billing, args.read_units, args.write_units)
    outcome = create_table(options, billing)
    if outcome == "created":
        _announce(f"created the table {options.table} ({args.billing}); it is ACTIVE")
    else:
        _announce(f"the table {options.table} exists with the right key schema; left as it is")
    return 0


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    if args.target:
        return run_dynamo_transfer(args, settings)
    from officesensor.transfer import export_csv

    start = _parse_time(args.start, "--start") if args.start else None
    end = _parse_time(args.end, "--end") if args.end else None
    out = args.output.open("w", newline="", encoding="utf-8") if args.output else sys.stdout
    try:
        count = export_csv(
            settings, out, metric=args.metric, sensor=args.sensor, start=start, end=end
        )
    finally:
        if args.output:
            out.close()
    print(f"officesensor: exported {count} readings", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    if args.source:
        return run_dynamo_transfer(args, settings)
    if args.file is None:
        from officesensor.errors import ConfigError

        raise ConfigError("FILE", "name a CSV file (or -), or a table with --from dynamodb://...")
    from officesensor.transfer import import_csv

    source = sys.stdin if str(args.file) == "-" else args.file.open(newline="", encoding="utf-8")
    try:
        result = import_csv(settings, source)
    finally:
        if source is not sys.stdin:
            source.close()
    print(
        f"officesensor: imported {result.stored} readings ({result.duplicates} already "
        f"there, {result.conflicts} conflicting kept aside)",
        file=sys.stderr,
    )
    return 0


def _check_exposure(args: argparse.Namespace, settings: Settings) -> None:
    """Refuse a non-loopback address without viewer authentication (exposure.py), naming
    the http setting as the user gave it."""
    import os

    from officesensor.exposure import check_exposure, setting_label

    flags = {f: getattr(args, f, None) for f in SETTING_FLAGS}
    check_exposure(settings, setting_label("http", args.config, os.environ, flags))


def run_auth(args: argparse.Namespace, settings: Settings) -> int:
    import getpass
    import secrets

    from officesensor import users
    from officesensor.errors import ConfigError

    if args.action == "new-token":
        print(secrets.token_urlsafe(32))
        return 0
    if not args.name:
        raise ConfigError("NAME", "add-user needs the viewer's name: auth add-user NAME")
    path = args.file or settings.auth_users_file
    if path is None:
        raise ConfigError("--file", "say which users file to write: --file PATH")
    try:
        users.check_name(args.name)
    except ValueError as exc:
        raise ConfigError("NAME", str(exc)) from None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("The same again: ") != password:
            raise ConfigError("password", "the two passwords differ")
    try:
        users.check_password(password)
    except ValueError as exc:
        source = "--password-stdin" if args.password_stdin else "password"
        raise ConfigError(source, str(exc)) from None
    try:
        replaced = users.write_user(path, args.name, password)
    except ValueError as exc:  # the file is there but is not a users file
        raise ConfigError("--file", f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError("--file", f"cannot write {path}: {exc.strerror}") from None
    if replaced:
        _announce(f"changed the password of {args.name} in {path}: every viewer signs in again")
    else:
        _announce(f"added {args.name} to {path} (mode 0600)")
    return 0


def _announce(message: str) -> None:
    if uses_json():  # keep the output one JSON object per line
        log.info(message)
        return
    print(f"officesensor: {message}", flush=True)


def _parse_time(text: str, flag: str) -> datetime:
    from officesensor.errors import ConfigError

    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(flag, f"{text!r} is not an ISO 8601 time") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


if __name__ == "__main__":
    sys.exit(main())
