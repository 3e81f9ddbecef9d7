"""What every package of the toolkit shares and nothing else owns: publishing files atomically and
the lazily-loading command group of the `rig`, `rpea` and `cacd` commands. Imports nothing of the
toolkit (it is the floor every other package stands on; docs/architecture.md)."""
