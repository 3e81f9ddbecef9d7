/* Host unit test of the timer arithmetic (src/timing.c): the vectors shared with the Python twin
 * (rig/trigger/protocol.py:plan_timer), then invariants over a sweep of rates and widths. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

static int g_failures;

static void fail(const char *what, uint32_t rate_mhz, uint32_t width_us)
{
    if (g_failures++ < 20) {
        printf("FAIL %s: rate_mhz=%" PRIu32 " width_us=%" PRIu32 "\n", what, rate_mhz, width_us);
    }
}

static void check_invariants(uint32_t rate_mhz, uint32_t width_us)
{
    static const uint32_t presc[] = PROTO_PRESCALERS;
    timer_plan_t p;
    uint8_t err = timing_plan(rate_mhz, width_us, &p);
    /* The exact period in cycles is 16e9 / rate_mhz. */
    double exact_cyc = (double)PROTO_F_CPU_HZ * 1000.0 / rate_mhz;
    if (err != 0) {
        if (err != PROTO_ERR_WIDTH_TOO_LONG_FOR_RATE) fail("unexpected error", rate_mhz, width_us);
        /* Refused only if the width really leaves under 20 us low (allowing rounding to ticks). */
        if ((double)width_us * 16.0 + 20.0 * 16.0 <= exact_cyc - 2048.0) fail("refused", rate_mhz, width_us);
        return;
    }
    if (p.period_cyc != ((uint32_t)p.top + 1u) * p.prescaler) fail("period_cyc", rate_mhz, width_us);
    if (p.width_cyc != ((uint32_t)p.ocrb + 1u) * p.prescaler) fail("width_cyc", rate_mhz, width_us);
    if (p.prescaler != (1u << p.presc_shift)) fail("shift", rate_mhz, width_us);
    if (presc[p.cs_bits - 1u] != p.prescaler) fail("cs bits", rate_mhz, width_us);
    if (p.ocrb >= p.top) fail("ocrb < top", rate_mhz, width_us);
    if (p.width_cyc + 20u * 16u > p.period_cyc) fail("min low time", rate_mhz, width_us);
    double perr = (double)p.period_cyc - exact_cyc;
    if (perr > p.prescaler / 2.0 + 1e-6 || perr < -(p.prescaler / 2.0) - 1e-6) fail("period rounding", rate_mhz, width_us);
    double werr = (double)p.width_cyc - (double)width_us * 16.0;
    /* Nearest tick, except that a width under half a tick is stretched to one tick. */
    int clamped = p.width_cyc == p.prescaler && (double)width_us * 16.0 < p.prescaler / 2.0;
    if (!clamped && (werr > p.prescaler / 2.0 + 1e-6 || werr < -(p.prescaler / 2.0) - 1e-6)) fail("width rounding", rate_mhz, width_us);
    /* The smallest prescaler that fits: the next smaller one would need > 65536 ticks. */
    if (p.cs_bits > 1u) {
        double smaller = exact_cyc / presc[p.cs_bits - 2u];
        if (smaller < 65536.0) fail("prescaler not minimal", rate_mhz, width_us);
    }
}

static int run_vectors(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (line[0] == '#' || line[0] == '\n') continue;
        uint32_t rate, width, want[7];
        char tail[64];
        if (sscanf(line, "%" SCNu32 " %" SCNu32 " -> %63s", &rate, &width, tail) != 3) {
            printf("FAIL bad vector line: %s", line);
            g_failures++;
            continue;
        }
        n++;
        timer_plan_t p;
        uint8_t err = timing_plan(rate, width, &p);
        if (strcmp(tail, "ERR") == 0) {
            uint32_t code;
            if (sscanf(strstr(line, "ERR") + 3, "%" SCNu32, &code) != 1 || err != code) fail("vector error code", rate, width);
            continue;
        }
        if (sscanf(strstr(line, "->") + 2, "%" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNu32 " %" SCNu32,
                   &want[0], &want[1], &want[2], &want[3], &want[4], &want[5], &want[6]) != 7) {
            printf("FAIL bad vector line: %s", line);
            g_failures++;
            continue;
        }
        if (err != 0 || p.prescaler != want[0] || p.top != want[1] || p.ocrb != want[2] ||
            p.period_cyc != want[3] || p.width_cyc != want[4] ||
            timing_achieved_rate_mhz(&p) != want[5] || timing_achieved_width_us(&p) != want[6]) {
            fail("vector mismatch", rate, width);
        }
    }
    fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s tests/timing_vectors.txt\n", argv[0]);
        return 2;
    }
    int n = run_vectors(argv[1]);
    if (n <= 0) {
        printf("FAIL no timing vectors read\n");
        return 1;
    }
    /* A sweep over the whole rate range (geometric steps) and widths from 20 us up. */
    uint32_t sweeps = 0;
    for (double rate = PROTO_RATE_MHZ_MIN; rate <= PROTO_RATE_MHZ_MAX; rate *= 1.0137) {
        for (double width = PROTO_WIDTH_US_MIN; width <= PROTO_WIDTH_US_MAX; width *= 1.31) {
            check_invariants((uint32_t)rate, (uint32_t)width);
            sweeps++;
        }
    }
    check_invariants(PROTO_RATE_MHZ_MAX, PROTO_WIDTH_US_MIN);
    check_invariants(PROTO_RATE_MHZ_MIN, PROTO_WIDTH_US_MAX);
    /* Microsecond clock: 16 cycles per us, wraps at 2^32 us. */
    if (timing_cycles_to_us(16u * 1000000u) != 1000000u) g_failures++;
    if (timing_cycles_to_us(((uint64_t)1 << 32) * 16u + 31u) != 1u) g_failures++;
    if (g_failures != 0) {
        printf("test_timing: %d FAILED\n", g_failures);
        return 1;
    }
    printf("test_timing: ok (%d vectors, %" PRIu32 " sweep points)\n", n, sweeps);
    return 0;
}
