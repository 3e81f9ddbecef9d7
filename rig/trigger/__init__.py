"""The trigger MCU from the host: its line protocol (`protocol`, the table the firmware's header is
generated from) and the serial client (`client.SerialTrigger`, the `serial` TriggerController)."""

from rig.trigger.client import (
    SerialTrigger,
    TriggerDisconnected,
    TriggerError,
    TriggerProtocolError,
    TriggerRefused,
    TriggerReset,
    TriggerTimeout,
    describe_flags,
    parse_status,
)

__all__ = ["SerialTrigger", "TriggerDisconnected", "TriggerError", "TriggerProtocolError",
           "TriggerRefused", "TriggerReset", "TriggerTimeout", "describe_flags", "parse_status"]
