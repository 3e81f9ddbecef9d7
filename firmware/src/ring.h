/* Lock-free single-producer single-consumer byte ring (one interrupt handler writes, the main loop
 * reads). Plain C, header only, host tested. Correct without disabling interrupts because each
 * index has exactly one writer and an 8-bit index is read and written in one instruction. */
#ifndef RING_H
#define RING_H

#include <stdint.h>

#define RING_SIZE 128u /* a power of two, at most 256 */
#define RING_MASK (RING_SIZE - 1u)

typedef struct {
    volatile uint8_t head; /* written only by the producer */
    volatile uint8_t tail; /* written only by the consumer */
    volatile uint8_t buf[RING_SIZE];
} ring_t;

/* Producer side. Returns 0 (byte dropped) when the ring is full. */
static inline uint8_t ring_put(ring_t *r, uint8_t byte)
{
    uint8_t head = r->head;
    uint8_t next = (uint8_t)((head + 1u) & RING_MASK);
    if (next == r->tail) {
        return 0;
    }
    r->buf[head] = byte;
    r->head = next; /* publish after the byte is stored */
    return 1;
}

/* Free slots (producer side: a lower bound while the consumer runs). */
static inline uint8_t ring_free(const ring_t *r)
{
    return (uint8_t)((r->tail - r->head - 1u) & RING_MASK);
}

/* Consumer side. Returns 0 when the ring is empty. */
static inline uint8_t ring_get(ring_t *r, uint8_t *byte)
{
    uint8_t tail = r->tail;
    if (tail == r->head) {
        return 0;
    }
    *byte = r->buf[tail];
    r->tail = (uint8_t)((tail + 1u) & RING_MASK);
    return 1;
}

#endif
