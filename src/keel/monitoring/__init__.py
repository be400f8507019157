"""Monitoring: drift statistics, drift reports, data quality, performance from feedback."""
