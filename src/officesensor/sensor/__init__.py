"""Sources of sensor readings: a simulated office and real hardware, plus their publisher."""
