/* USART0 at 115200 8N1: interrupt-driven receive into a lock-free ring, polled transmit. */
#ifndef UART_H
#define UART_H

#include <stdint.h>

void uart_init(void);
/* Next received byte; 0 when none is waiting. */
uint8_t uart_read(uint8_t *byte);
/* Send a line followed by CR LF (busy-waits on the data register; edges come from interrupts, so a
 * slow transmit never delays a pulse). */
void uart_write_line(const char *s);
/* Counters bumped by the receive interrupt (compare with a saved copy to get a sticky flag). */
uint8_t uart_rx_overflows(void);
uint8_t uart_rx_errors(void);

#endif
