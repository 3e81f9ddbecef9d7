/* The pulse generator on Timer1 (CTC mode): COMPA raises each pulse, COMPB ends it; the same
 * timer keeps the 32-bit microsecond clock, so the clock and the pulses can never drift apart. */
#ifndef PULSE_H
#define PULSE_H

#include <stdint.h>

#include "proto.h"

/* Trigger output: Arduino D9 (PB1); D13 (PB5, the on-board LED) mirrors it, active high. */
void pulse_init(const timer_plan_t *idle_plan);
void pulse_set_polarity(uint8_t active_high); /* only while not running */
uint32_t pulse_start(const proto_config_t *cfg, const timer_plan_t *plan);
uint32_t pulse_stop(void);
void pulse_status(proto_status_t *st); /* err_flags left 0: main adds them */
/* Next queued pulse report; 0 when none. */
uint8_t pulse_take_report(uint32_t *index, uint32_t *t_us);
/* Reports dropped because the queue was full (a counter; compare with a saved copy). */
uint8_t pulse_report_drops(void);

#endif
