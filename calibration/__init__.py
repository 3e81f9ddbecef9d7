"""Checkerboard calibration of both cameras and the event-to-frame pixel alignment."""
