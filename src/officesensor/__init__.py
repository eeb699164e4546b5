"""Office Sensor: MQTT ingest, exactly-once storage, rolling anomalies and a live dashboard."""

__version__ = "0.1.0"
