/* Host unit test of the lock-free receive ring (src/ring.h): order, full and empty behaviour. */
#include <stdio.h>

#include "ring.h"

int main(void)
{
    static ring_t r;
    int failures = 0;
    uint8_t b;
    if (ring_get(&r, &b)) failures++; /* empty at start */
    if (ring_free(&r) != RING_SIZE - 1u) { printf("FAIL free when empty\n"); failures++; }
    unsigned put = 0;
    while (ring_put(&r, (uint8_t)put)) put++;
    if (put != RING_SIZE - 1u) { printf("FAIL capacity %u\n", put); failures++; }
    if (ring_free(&r) != 0u) { printf("FAIL free when full\n"); failures++; }
    for (unsigned i = 0; i < put; i++) {
        if (!ring_get(&r, &b) || b != (uint8_t)i) { printf("FAIL order at %u\n", i); failures++; break; }
    }
    if (ring_get(&r, &b)) failures++; /* empty again */
    /* Interleaved use across many wrap-arounds of the 8-bit indices. */
    unsigned next_put = 0, next_get = 0;
    for (unsigned step = 0; step < 100000u; step++) {
        unsigned burst = (step * 7u) % 5u;
        for (unsigned k = 0; k < burst; k++) {
            if (ring_put(&r, (uint8_t)next_put)) next_put++;
        }
        if (ring_get(&r, &b)) {
            if (b != (uint8_t)next_get) { printf("FAIL wrap order\n"); failures++; break; }
            next_get++;
        }
    }
    if (failures) { printf("test_ring: FAILED\n"); return 1; }
    printf("test_ring: ok\n");
    return 0;
}
