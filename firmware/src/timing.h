/* Timer arithmetic of the trigger: rate/width -> Timer1 prescaler and compare values, and the
 * cycle -> microsecond clock. Plain C (no AVR headers) so the host unit tests compile it with gcc;
 * the Python twin is rig/trigger/protocol.py:plan_timer (same integer steps). */
#ifndef TIMING_H
#define TIMING_H

#include <stdint.h>

#include "proto_spec.h"

#if PROTO_CYCLES_PER_US != 16
#error "timing_cycles_to_us assumes 16 cycles per microsecond"
#endif

typedef struct {
    uint16_t prescaler;   /* 1, 8, 64, 256 or 1024 */
    uint8_t presc_shift;  /* log2(prescaler) */
    uint8_t cs_bits;      /* CS12..CS10 value of TCCR1B for this prescaler */
    uint16_t top;         /* OCR1A: the period is top + 1 ticks */
    uint16_t ocrb;        /* OCR1B: the pulse lasts ocrb + 1 ticks */
    uint32_t period_cyc;  /* CPU cycles per period; achieved rate = F_CPU / period_cyc exactly */
    uint32_t width_cyc;   /* CPU cycles per pulse */
} timer_plan_t;

/* Fill `plan` for a rate (mHz) and width (us) already within the protocol's limits.
 * Returns 0, or PROTO_ERR_OUT_OF_RANGE / PROTO_ERR_WIDTH_TOO_LONG_FOR_RATE. */
uint8_t timing_plan(uint32_t rate_mhz, uint32_t width_us, timer_plan_t *plan);

/* The achieved rate rounded to the nearest mHz, and the achieved width to the nearest us. */
uint32_t timing_achieved_rate_mhz(const timer_plan_t *plan);
uint32_t timing_achieved_width_us(const timer_plan_t *plan);

/* Microseconds (mod 2^32) of a 64-bit cycle count (inline: the pulse interrupt uses it). */
static inline uint32_t timing_cycles_to_us(uint64_t cycles)
{
    return (uint32_t)(cycles >> 4); /* 16 cycles per us at 16 MHz */
}

#endif
