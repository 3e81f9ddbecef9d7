/* The line protocol of the trigger (firmware/PROTOCOL.md): a byte-at-a-time line assembler and the
 * command interpreter. Plain C (no AVR headers): the same code runs on the MCU and in the host
 * unit tests; the hardware is reached only through the `proto_hw_t` hooks. */
#ifndef PROTO_H
#define PROTO_H

#include <stdint.h>

#include "proto_spec.h"
#include "timing.h"

#define PROTO_REPLY_MAX 200u /* longest reply line + NUL, no line ending */

enum { PROTO_STATE_IDLE = 0, PROTO_STATE_RUNNING = 1, PROTO_STATE_DONE = 2 };

typedef struct {
    uint32_t rate_mhz;
    uint32_t width_us;
    uint32_t count; /* 0 = until STOP */
    uint8_t polarity_high;
    uint8_t report;
} proto_config_t;

typedef struct {
    uint8_t state;
    uint32_t pulses;
    uint32_t t_us;
    uint8_t err_flags;
} proto_status_t;

typedef struct {
    const char *board;
    /* A consistent snapshot of the pulse generator. */
    void (*status)(proto_status_t *st);
    /* A new configuration while not running (set the idle level of the output). */
    void (*configure)(const proto_config_t *cfg, const timer_plan_t *plan);
    /* Start a pulse train; returns the MCU time (us) of pulse 0's rising edge. */
    uint32_t (*start)(const proto_config_t *cfg, const timer_plan_t *plan);
    /* Stop after the pulse in progress; returns the pulses emitted. */
    uint32_t (*stop)(void);
    /* Clear the sticky error flags; returns them as they were. */
    uint8_t (*clear)(void);
} proto_hw_t;

typedef struct {
    const proto_hw_t *hw;
    proto_config_t cfg;
    timer_plan_t plan;
    char line[PROTO_MAX_LINE + 1u];
    uint8_t len;      /* bytes of the current line (CR not counted) */
    uint8_t too_long; /* the current line passed PROTO_MAX_LINE bytes */
    uint8_t bad_char; /* the current line holds a byte outside printable ASCII and tab */
} proto_t;

/* Defaults of the table, then hw->configure. */
void proto_init(proto_t *p, const proto_hw_t *hw);

/* Feed one received byte. Returns 1 when a reply line is ready in `out` (NUL-terminated, without
 * line ending), 0 otherwise. `out` holds PROTO_REPLY_MAX bytes. */
uint8_t proto_feed(proto_t *p, uint8_t byte, char *out);

/* The boot banner `READY <name> <version>`. */
void proto_banner(char *out);

/* An asynchronous pulse report `PULSE <index> <t_us>`. */
void proto_pulse_line(char *out, uint32_t index, uint32_t t_us);

#endif
