/* USART0 driver, see uart.h. */
#include "uart.h"

#include <avr/interrupt.h>
#include <avr/io.h>

#include "proto_spec.h"
#include "ring.h"

static ring_t g_rx;
static volatile uint8_t g_rx_overflows;
static volatile uint8_t g_rx_errors;
static uint8_t g_rx_lost; /* ISR only: bytes were lost, a marker is owed */

/* A lost or damaged byte must not let a corrupted command through: the next stored byte is
 * preceded by a NUL, which the protocol rejects as a bad character (ERR 4) for that line. */
ISR(USART_RX_vect)
{
    uint8_t status = UCSR0A;
    uint8_t byte = UDR0;
    if (status & (_BV(FE0) | _BV(DOR0))) {
        g_rx_errors++;
        g_rx_lost = 1;
    }
    if (g_rx_lost) {
        if (ring_free(&g_rx) < 2u) {
            g_rx_overflows++;
            return;
        }
        (void)ring_put(&g_rx, 0x00);
        g_rx_lost = 0;
    }
    if (!ring_put(&g_rx, byte)) {
        g_rx_overflows++;
        g_rx_lost = 1;
    }
}

void uart_init(void)
{
    /* U2X: UBRR = F_CPU / (8 * baud) - 1 = 16 -> 117647 baud (+2.1 %), as the Uno bootloader. */
    const uint16_t ubrr = (uint16_t)((PROTO_F_CPU_HZ / 4u / PROTO_BAUD - 1u) / 2u);
    UBRR0H = (uint8_t)(ubrr >> 8);
    UBRR0L = (uint8_t)ubrr;
    UCSR0A = _BV(U2X0);
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00); /* 8N1 */
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
    (void)UDR0; /* drop a stale byte (needed under QEMU, harmless on the chip) */
}

uint8_t uart_read(uint8_t *byte)
{
    return ring_get(&g_rx, byte);
}

static void put_byte(uint8_t b)
{
    while (!(UCSR0A & _BV(UDRE0))) {
    }
    UDR0 = b;
}

void uart_write_line(const char *s)
{
    while (*s != '\0') {
        put_byte((uint8_t)*s++);
    }
    put_byte('\r');
    put_byte('\n');
}

uint8_t uart_rx_overflows(void)
{
    return g_rx_overflows;
}

uint8_t uart_rx_errors(void)
{
    return g_rx_errors;
}
