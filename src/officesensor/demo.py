"""``officesensor demo`` and ``officesensor sensor``: the simulated sensor, live or backfilled."""

from __future__ import annotations

import argparse
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from officesensor.broker import EmbeddedBroker
from officesensor.config import MqttUrl, Settings, parse_duration, parse_sensor_name
from officesensor.errors import BrokerError, ConfigError
from officesensor.ingest import Ingest
from officesensor.models import DEFAULT_SENSOR
from officesensor.sensor.backfill import backfill, history
from officesensor.sensor.clock import ClockGate
from officesensor.sensor.publisher import Publisher, exit_code, run_sensor
from officesensor.sensor.simulated import Sample, SimulatedOffice
from officesensor.sensor.sources import Sampler, open_source
from officesensor.store import open_store

log = logging.getLogger(__name__)


def pick_seed(seed: int | None) -> int:
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
        log.info("simulation seed %d (pass --seed %d to repeat this run)", seed, seed)
    return seed


class Demo:
    def __init__(
        self,
        settings: Settings,
        *,
        data_dir: Path,
        broker_port: int,
        interval_s: float,
        backfill: str,
        seed: int | None,
        announce: Callable[[str], None],
    ) -> None:
        if interval_s <= 0:
            raise ConfigError("--interval", "must be a positive number of seconds")
        self.span = None if backfill in ("0", "") else _duration(backfill, "--backfill")
        self.settings = settings.replace(
            store=f"sqlite:///{(data_dir / 'officesensor.db').resolve()}",
            mqtt_protocol="3.1.1",  # amqtt speaks MQTT 3.1.1 only
            mqtt_client_id="officesensor-demo-ingest",
            mqtt_ca_file=None,
            mqtt_cert_file=None,
            mqtt_key_file=None,
            sensor_outbox=data_dir / "sensor-outbox.db",
            alerts_state=data_dir / "alerts.db",
        )
        self.broker_port = broker_port
        self.interval_s = interval_s
        self.seed = pick_seed(seed)
        self.announce = announce

    def run(self) -> int:
        from officesensor.service import serve

        broker = EmbeddedBroker("127.0.0.1", self.broker_port)
        try:
            broker.start()
        except BrokerError as exc:
            raise ConfigError("--broker-port", str(exc)) from None
        settings = self.settings.replace(mqtt_url=MqttUrl("127.0.0.1", broker.port, tls=False))
        stop = threading.Event()
        try:
            samples = self._samples(settings)
            publisher = Publisher(settings, "officesensor-demo-sensor")
        except BaseException:
            broker.stop()
            raise

        sensor: threading.Thread | None = None

        def sense(ingest: Ingest) -> None:
            # Publishing before ingest has subscribed would send the first readings to nobody.
            deadline = time.monotonic() + 10
            while not ingest.snapshot().connected and time.monotonic() < deadline:
                if stop.wait(0.05):
                    return
            run_sensor(samples, publisher, sensor=DEFAULT_SENSOR, tz=settings.tz, stop=stop)

        def start_sensor(ingest: Ingest) -> None:
            nonlocal sensor
            sensor = threading.Thread(target=sense, args=(ingest,), name="demo-sensor", daemon=True)
            sensor.start()

        def stop_sensor() -> None:
            stop.set()
            if sensor is not None:
                sensor.join(5)
            publisher.close()

        self.announce(
            f"embedded MQTT broker on mqtt://127.0.0.1:{broker.port}, data in "
            f"{settings.store}, a reading every {self.interval_s:g} s"
        )
        try:
            return serve(
                settings,
                announce=self.announce,
                on_started=start_sensor,
                stop_first=[stop_sensor],
                stop_last=[broker.stop],
            )
        except BaseException:
            if sensor is None:  # serve failed before it started (a busy web port, say)
                stop_sensor()
                broker.stop()
            raise

    def _samples(self, settings: Settings) -> Iterator[Sample]:
        """The live sensor's samples. On an empty store, the same simulation first fills
        ``span`` of history, and the live readings carry on from where it ends."""
        office = SimulatedOffice(self.seed, tz=settings.tz)
        now = datetime.now(UTC)
        if self.span is None:
            return office.samples(now, self.interval_s)
        store = open_store(settings.store, settings.tz)
        try:
            if any(info.count for info in store.series()):
                return office.samples(now, self.interval_s)
            self.announce(f"simulating {self.span} of history first")
            samples, past = history(office, self.span, self.interval_s, now)
            backfill(
                store, samples, past, sensor=DEFAULT_SENSOR,
                window=settings.window, z_threshold=settings.z, method=settings.anomaly_method,
            )  # fmt: skip
            return samples
        finally:
            store.close()


def sensor_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """The settings with the ``sensor`` command's --sensor and --source flags applied."""
    changes: dict[str, str] = {}
    if args.sensor is not None:
        try:
            changes["sensor_name"] = parse_sensor_name(args.sensor)
        except ValueError as exc:
            raise ConfigError("--sensor", f"{exc} (got {args.sensor!r})") from None
    if args.source is not None:
        changes["sensor_source"] = args.source
    return settings.replace(**changes) if changes else settings


def run_sensor_cli(args: argparse.Namespace, settings: Settings) -> int:
    if args.interval <= 0:
        raise ConfigError("--interval", "must be a positive number of seconds")
    sensor_name = settings.sensor_name
    simulated = settings.sensor_source == "simulated"
    office = SimulatedOffice(pick_seed(args.seed) if simulated else 0, tz=settings.tz)
    if args.backfill:
        if not simulated:
            raise ConfigError("--backfill", "simulates history: only with --source simulated")
        span = _duration(args.backfill, "--backfill")
        store = open_store(settings.store, settings.tz)
        try:
            samples, past = history(office, span, args.interval, datetime.now(UTC))
            stored, rejected = backfill(
                store, samples, past, sensor=sensor_name,
                window=settings.window, z_threshold=settings.z, method=settings.anomaly_method,
            )  # fmt: skip
        finally:
            store.close()
        log.info("backfill stored %d readings (%d rejected)", stored, rejected)
        return 0
    from officesensor.service import install_stop_signals

    stop = threading.Event()
    install_stop_signals(stop)
    source = open_source(
        settings, simulation=office, start=datetime.now(UTC), interval_s=args.interval
    )
    try:
        publisher = Publisher(settings, settings.mqtt_client_id + "-sensor", status_of=sensor_name)
    except BaseException:
        source.close()
        raise
    log.info("sensor %s: reading %s every %g s", sensor_name, source.name, args.interval)
    sampler = Sampler(
        source,
        interval_s=args.interval,
        gate=ClockGate(settings.sensor_clock_check),
        units=settings.sensor_units,
    )
    samples = sampler.samples(stop)
    if args.count is not None:
        samples = itertools.islice(samples, args.count)
    try:
        published = run_sensor(
            samples,
            publisher,
            sensor=sensor_name,
            tz=settings.tz,
            original_format=args.original_format,
            stop=stop,
        )
    finally:
        try:
            publisher.flush(10.0)
            stats = publisher.close(flush_timeout_s=0)
        finally:
            source.close()
    log.info("published %d samples", published)  # close() logs the delivery summary
    if sampler.skipped.total():
        log.warning("sensor: skipped readings: %s", sampler.skipped.summary())
    # 0: all delivered; 75: nothing lost, some still in the outbox for the next run; 1: lost.
    return exit_code(stats)


def _duration(text: str, flag: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(flag, str(exc)) from None
