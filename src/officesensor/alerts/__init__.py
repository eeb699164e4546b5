"""Alerts: rules (``rules``), their evaluation, delivery and history."""
