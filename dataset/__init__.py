"""Event toolkit, the RPEA builder and format, readers, and dataset tools (`rpea` CLI)."""
