"""A click group whose subcommands are imported only when used (fast `--help`, optional deps)."""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """Subcommands given as {name: "module:attribute"}; a module is imported on first use."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, _, attr = self.lazy_commands[cmd_name].partition(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
                    return _unavailable(cmd_name, f"not implemented yet ({module_name} missing)")
                if exc.name == "cv2":
                    from common.opencv import INSTALL_HINT

                    return _unavailable(cmd_name, f"missing OpenCV (no cv2 module): {INSTALL_HINT}")
                raise
            return getattr(module, attr)
        return super().get_command(ctx, cmd_name)


def _unavailable(name: str, why: str) -> click.Command:
    @click.command(name, help=f"(unavailable: {why})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"'{name}' is {why}")

    return cmd
