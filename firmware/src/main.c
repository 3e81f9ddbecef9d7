/* Trigger firmware for the ATmega328P (Arduino Uno): the main loop. It moves received bytes into
 * the protocol interpreter, sends replies and pulse reports, and never sleeps: `sleep` does not
 * return under QEMU, and a busy loop costs nothing on a USB-powered board. The pulses themselves
 * come from the Timer1 interrupts in pulse.c. */
#include <avr/interrupt.h>
#include <avr/io.h>

#include "proto.h"
#include "pulse.h"
#include "uart.h"

static uint8_t g_flag_base_rx_overflow;
static uint8_t g_flag_base_rx_error;
static uint8_t g_flag_base_report_drop;

static uint8_t error_flags(void)
{
    uint8_t flags = 0;
    if (uart_rx_overflows() != g_flag_base_rx_overflow) {
        flags |= PROTO_FLAG_RX_OVERFLOW;
    }
    if (pulse_report_drops() != g_flag_base_report_drop) {
        flags |= PROTO_FLAG_REPORT_OVERFLOW;
    }
    if (uart_rx_errors() != g_flag_base_rx_error) {
        flags |= PROTO_FLAG_UART_ERROR;
    }
    return flags;
}

static uint8_t hw_clear(void)
{
    uint8_t flags = error_flags();
    g_flag_base_rx_overflow = uart_rx_overflows();
    g_flag_base_rx_error = uart_rx_errors();
    g_flag_base_report_drop = pulse_report_drops();
    return flags;
}

static void hw_status(proto_status_t *st)
{
    pulse_status(st);
    st->err_flags = error_flags();
}

static void hw_configure(const proto_config_t *cfg, const timer_plan_t *plan)
{
    (void)plan; /* loaded by START, so the clock runs on undisturbed until then */
    pulse_set_polarity(cfg->polarity_high);
}

static uint32_t hw_start(const proto_config_t *cfg, const timer_plan_t *plan)
{
    (void)hw_clear();
    return pulse_start(cfg, plan);
}

static const proto_hw_t k_hw = {
    "uno", hw_status, hw_configure, hw_start, pulse_stop, hw_clear,
};

static proto_t g_proto;
static char g_out[PROTO_REPLY_MAX];

int main(void)
{
    timer_plan_t idle_plan;
    (void)timing_plan(PROTO_DEFAULT_RATE_MHZ, PROTO_DEFAULT_WIDTH_US, &idle_plan);
    pulse_init(&idle_plan);
    uart_init();
    proto_init(&g_proto, &k_hw);
    sei(); /* the only global interrupt enable; nothing ever clears I again */
    proto_banner(g_out);
    uart_write_line(g_out);
    for (;;) {
        uint8_t byte;
        while (uart_read(&byte)) { /* requests first: the receive ring must never fill */
            if (proto_feed(&g_proto, byte, g_out)) {
                uart_write_line(g_out);
            }
        }
        uint32_t index;
        uint32_t t_us;
        if (pulse_take_report(&index, &t_us)) { /* one per turn, so requests are served */
            proto_pulse_line(g_out, index, t_us);
            uart_write_line(g_out);
        }
    }
}
