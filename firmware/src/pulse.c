/* Timer1 pulse generator and clock, see pulse.h.
 *
 * No code here disables interrupts globally: under QEMU a `sei` can lose a pending interrupt, so
 * the main loop reads ISR-owned state lock-free (a sequence counter bumped by COMPA, retried on
 * change) and reprograms the timer with its clock stopped instead of inside cli/sei. */
#include "pulse.h"

#include <avr/interrupt.h>
#include <avr/io.h>

#define TRIG_BIT PB1 /* Arduino D9 */
#define LED_BIT PB5  /* Arduino D13 */
#define REPORT_SLOTS 16u /* power of two */

/* The clock when TCNT1 was last 0, as whole microseconds (mod 2^32) plus 0..15 cycles. 32-bit
 * arithmetic only: the COMPA handler then saves few registers and raises the edge sooner. */
static volatile uint32_t g_base_us;
static volatile uint8_t g_base_frac;
static volatile uint32_t g_period_cyc; /* (TOP + 1) * prescaler */
static volatile uint32_t g_top_cyc;    /* TOP * prescaler: COMPA fires this long after base */
static volatile uint16_t g_top;
static volatile uint8_t g_shift;       /* log2(prescaler) */
static volatile uint8_t g_seq;         /* bumped by every COMPA: lock-free snapshot check */
static volatile uint8_t g_state;
static volatile uint32_t g_pulses;
static volatile uint32_t g_count;
static volatile uint8_t g_active_high = 1;
static volatile uint8_t g_report;

static volatile uint32_t g_rep_index[REPORT_SLOTS];
static volatile uint32_t g_rep_t_us[REPORT_SLOTS];
static volatile uint8_t g_rep_head; /* written by COMPA only */
static volatile uint8_t g_rep_tail; /* written by the main loop only */
static volatile uint8_t g_rep_drops;

static inline __attribute__((always_inline)) void out_active(void)
{
    if (g_active_high) {
        PORTB |= _BV(TRIG_BIT); /* sbi: one instruction, no read-modify-write race */
    } else {
        PORTB &= (uint8_t)~_BV(TRIG_BIT);
    }
    PORTB |= _BV(LED_BIT);
}

static inline __attribute__((always_inline)) void out_idle(void)
{
    if (g_active_high) {
        PORTB &= (uint8_t)~_BV(TRIG_BIT);
    } else {
        PORTB |= _BV(TRIG_BIT);
    }
    PORTB &= (uint8_t)~_BV(LED_BIT);
}

ISR(TIMER1_COMPA_vect)
{
    if (g_state == PROTO_STATE_RUNNING) {
        out_active(); /* first: the edge's latency stays constant */
        uint32_t index = g_pulses;
        g_pulses = index + 1u;
        if (g_count != 0u && index + 1u >= g_count) {
            g_state = PROTO_STATE_DONE;
        }
        if (g_report) {
            uint8_t head = g_rep_head;
            uint8_t next = (uint8_t)((head + 1u) & (REPORT_SLOTS - 1u));
            if (next == g_rep_tail) {
                g_rep_drops++;
            } else {
                g_rep_index[head] = index;
                g_rep_t_us[head] = g_base_us + ((g_base_frac + g_top_cyc) >> 4);
                g_rep_head = next;
            }
        }
    }
    uint32_t cyc = g_base_frac + g_period_cyc;
    g_base_us += cyc >> 4;
    g_base_frac = (uint8_t)(cyc & 15u);
    g_seq++;
}

ISR(TIMER1_COMPB_vect)
{
    out_idle(); /* every period, running or not: ends the pulse COMPA raised */
}

static void load_plan(const timer_plan_t *plan)
{
    OCR1A = plan->top;
    OCR1B = plan->ocrb;
    g_top = plan->top;
    g_shift = plan->presc_shift;
    g_period_cyc = plan->period_cyc;
    g_top_cyc = (uint32_t)plan->top << plan->presc_shift;
}

void pulse_init(const timer_plan_t *idle_plan)
{
    DDRB |= _BV(TRIG_BIT) | _BV(LED_BIT);
    out_idle();
    TCCR1A = 0;
    TCCR1B = _BV(WGM12); /* CTC, TOP = OCR1A, clock stopped */
    TCNT1 = 0;
    load_plan(idle_plan);
    g_base_us = 0;
    g_base_frac = 0;
    TIFR1 = _BV(OCF1A) | _BV(OCF1B) | _BV(TOV1);
    TIMSK1 = _BV(OCIE1A) | _BV(OCIE1B);
    TCCR1B = _BV(WGM12) | idle_plan->cs_bits;
}

void pulse_set_polarity(uint8_t active_high)
{
    g_active_high = active_high;
    out_idle();
}

/* The clock now as (us, cycles 0..15); the caller guarantees COMPA cannot run (timer stopped)
 * or retries on g_seq. */
static uint32_t clock_now(uint8_t *frac)
{
    uint16_t tcnt = TCNT1;
    if (tcnt > g_top) {
        tcnt = g_top; /* an emulator may report a count past TOP before the ISR ran */
    }
    uint32_t cyc = g_base_frac + ((uint32_t)tcnt << g_shift);
    *frac = (uint8_t)(cyc & 15u);
    return g_base_us + (cyc >> 4);
}

/* (us, frac) + signed cycles, for the few cycle offsets START needs. */
static uint32_t add_cycles(uint32_t us, uint8_t *frac, int32_t cycles)
{
    int32_t c = (int32_t)*frac + cycles;
    int32_t whole = c >> 4; /* floor division by 16 (arithmetic shift) */
    *frac = (uint8_t)(c - whole * 16);
    return us + (uint32_t)whole;
}

uint32_t pulse_start(const proto_config_t *cfg, const timer_plan_t *plan)
{
    TCCR1B = _BV(WGM12); /* stop the clock: no compare match from here on */
    __asm__ __volatile__("nop\n\tnop\n\tnop\n\tnop" ::: "memory"); /* let a pending ISR run */
    uint8_t now_frac;
    uint32_t now_us = clock_now(&now_frac);
    g_active_high = cfg->polarity_high;
    out_idle();
    load_plan(plan);
    /* Two ticks before TOP: writing TCNT1 blocks a compare match on the next timer clock, so one
     * tick of margin keeps pulse 0's COMPA; it rises 2 ticks after START. */
    uint16_t start_cnt = (uint16_t)(plan->top - 2u);
    uint8_t frac = now_frac;
    g_base_us = add_cycles(now_us, &frac, -(int32_t)((uint32_t)start_cnt << plan->presc_shift));
    g_base_frac = frac;
    g_pulses = 0;
    g_count = cfg->count;
    g_report = cfg->report;
    g_rep_tail = g_rep_head; /* drop reports of an earlier run (head is ISR-owned, ISR is off) */
    g_state = PROTO_STATE_RUNNING;
    g_seq++;
    TCNT1 = start_cnt;
    TIFR1 = _BV(OCF1A) | _BV(OCF1B) | _BV(TOV1);
    TCCR1B = _BV(WGM12) | plan->cs_bits;
    frac = now_frac;
    return add_cycles(now_us, &frac, (int32_t)((uint32_t)2u << plan->presc_shift));
}

uint32_t pulse_stop(void)
{
    uint8_t seq;
    uint32_t pulses;
    do {
        seq = g_seq;
        g_state = PROTO_STATE_IDLE; /* COMPB still ends the pulse in progress */
        pulses = g_pulses;
    } while (seq != g_seq);
    return pulses;
}

void pulse_status(proto_status_t *st)
{
    uint8_t seq;
    do {
        seq = g_seq;
        st->state = g_state;
        st->pulses = g_pulses;
        uint8_t frac;
        st->t_us = clock_now(&frac);
    } while (seq != g_seq);
    st->err_flags = 0;
}

uint8_t pulse_take_report(uint32_t *index, uint32_t *t_us)
{
    uint8_t tail = g_rep_tail;
    if (tail == g_rep_head) {
        return 0;
    }
    *index = g_rep_index[tail];
    *t_us = g_rep_t_us[tail];
    g_rep_tail = (uint8_t)((tail + 1u) & (REPORT_SLOTS - 1u));
    return 1;
}

uint8_t pulse_report_drops(void)
{
    return g_rep_drops;
}
