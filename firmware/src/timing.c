/* Timer arithmetic, see timing.h. */
#include "timing.h"

#include "proto_spec.h"

static const uint16_t k_prescalers[PROTO_N_PRESCALERS] = PROTO_PRESCALERS;
static const uint8_t k_shifts[PROTO_N_PRESCALERS] = {0, 3, 6, 8, 10};

uint8_t timing_plan(uint32_t rate_mhz, uint32_t width_us, timer_plan_t *plan)
{
    const uint64_t num = (uint64_t)PROTO_F_CPU_HZ * 1000u;
    uint32_t ticks = 0;
    uint8_t i;
    for (i = 0; i < PROTO_N_PRESCALERS; i++) {
        uint64_t den = (uint64_t)rate_mhz * k_prescalers[i];
        uint64_t t = (num + den / 2u) / den;
        if (t <= PROTO_TIMER_MAX_TICKS) {
            ticks = (uint32_t)t;
            break;
        }
    }
    if (i == PROTO_N_PRESCALERS || ticks < 3u) {
        return PROTO_ERR_OUT_OF_RANGE;
    }
    uint32_t presc = k_prescalers[i];
    uint32_t width_ticks = (width_us * PROTO_CYCLES_PER_US + presc / 2u) / presc;
    if (width_ticks < 1u) {
        width_ticks = 1u;
    }
    uint32_t period_cyc = ticks * presc;
    uint32_t width_cyc = width_ticks * presc;
    if (width_cyc + PROTO_MIN_LOW_US * PROTO_CYCLES_PER_US > period_cyc) {
        return PROTO_ERR_WIDTH_TOO_LONG_FOR_RATE;
    }
    plan->prescaler = (uint16_t)presc;
    plan->presc_shift = k_shifts[i];
    plan->cs_bits = (uint8_t)(i + 1u);
    plan->top = (uint16_t)(ticks - 1u);
    plan->ocrb = (uint16_t)(width_ticks - 1u);
    plan->period_cyc = period_cyc;
    plan->width_cyc = width_cyc;
    return 0;
}

uint32_t timing_achieved_rate_mhz(const timer_plan_t *plan)
{
    const uint64_t num = (uint64_t)PROTO_F_CPU_HZ * 1000u;
    return (uint32_t)((num + plan->period_cyc / 2u) / plan->period_cyc);
}

uint32_t timing_achieved_width_us(const timer_plan_t *plan)
{
    return (plan->width_cyc + PROTO_CYCLES_PER_US / 2u) / PROTO_CYCLES_PER_US;
}
