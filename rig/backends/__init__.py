"""Vendor and open backends behind the device interfaces (imported lazily)."""
