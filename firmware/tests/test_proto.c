/* Host unit test of the protocol interpreter (src/proto.c): replays tests/vectors.txt against it
 * with a fake pulse generator, then checks a few things the vectors cannot express. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static uint8_t g_state = PROTO_STATE_IDLE;
static uint32_t g_pulses;
static uint8_t g_flags;
static uint32_t g_configures;

static void fake_status(proto_status_t *st)
{
    st->state = g_state;
    st->pulses = g_pulses;
    st->t_us = 123456u;
    st->err_flags = g_flags;
}

static void fake_configure(const proto_config_t *cfg, const timer_plan_t *plan)
{
    (void)cfg;
    (void)plan;
    g_configures++;
}

static uint32_t fake_start(const proto_config_t *cfg, const timer_plan_t *plan)
{
    (void)cfg;
    (void)plan;
    g_state = PROTO_STATE_RUNNING;
    g_pulses = 0;
    g_flags = 0;
    return 777u;
}

static uint32_t fake_stop(void)
{
    g_state = PROTO_STATE_IDLE;
    return g_pulses;
}

static uint8_t fake_clear(void)
{
    uint8_t f = g_flags;
    g_flags = 0;
    return f;
}

static const proto_hw_t k_fake = {"host", fake_status, fake_configure, fake_start, fake_stop,
                                  fake_clear};

static int g_failures;

/* Token-wise match: an expected token "*" or "key=*" matches any value. */
static int line_matches(const char *expected, const char *actual)
{
    char e[512], a[512];
    snprintf(e, sizeof e, "%s", expected);
    snprintf(a, sizeof a, "%s", actual);
    char *se, *sa;
    char *te = strtok_r(e, " ", &se);
    char *ta = strtok_r(a, " ", &sa);
    while (te != NULL && ta != NULL) {
        size_t n = strlen(te);
        if (strcmp(te, "*") == 0) {
            /* any */
        } else if (n >= 2 && strcmp(te + n - 2, "=*") == 0) {
            if (strncmp(te, ta, n - 1) != 0) {
                return 0;
            }
        } else if (strcmp(te, ta) != 0) {
            return 0;
        }
        te = strtok_r(NULL, " ", &se);
        ta = strtok_r(NULL, " ", &sa);
    }
    return te == NULL && ta == NULL;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

#define MAX_REPLIES 16

static proto_t g_p;
static char g_replies[MAX_REPLIES][PROTO_REPLY_MAX];
static int g_nreplies;

static void feed_bytes(const uint8_t *b, size_t n)
{
    char out[PROTO_REPLY_MAX];
    for (size_t i = 0; i < n; i++) {
        memset(out, 0x55, sizeof out);
        if (proto_feed(&g_p, b[i], out)) {
            if (strlen(out) >= PROTO_REPLY_MAX) {
                printf("FAIL: unterminated reply\n");
                g_failures++;
                return;
            }
            if (g_nreplies < MAX_REPLIES) {
                strcpy(g_replies[g_nreplies], out);
            }
            g_nreplies++;
        }
    }
}

static void check_block(int lineno, const char *request, char expected[][PROTO_REPLY_MAX], int nexp)
{
    int ok = g_nreplies == nexp;
    for (int i = 0; ok && i < nexp; i++) {
        ok = line_matches(expected[i], g_replies[i]);
    }
    if (!ok) {
        g_failures++;
        printf("FAIL vectors.txt:%d request %s\n", lineno, request);
        for (int i = 0; i < nexp; i++) printf("  expected: %s\n", expected[i]);
        for (int i = 0; i < g_nreplies && i < MAX_REPLIES; i++) printf("  got:      %s\n", g_replies[i]);
    }
}

static int run_vectors(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    char line[1024];
    char request[1024] = "";
    char expected[MAX_REPLIES][PROTO_REPLY_MAX];
    int nexp = 0, req_line = 0, lineno = 0, blocks = 0;
    int have_request = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] != '>' && line[0] != '<') {
            continue;
        }
        if (line[0] == '<') {
            if (nexp < MAX_REPLIES) {
                strncpy(expected[nexp], line + 2, PROTO_REPLY_MAX - 1);
                expected[nexp++][PROTO_REPLY_MAX - 1] = '\0';
            }
            continue;
        }
        if (have_request) {
            check_block(req_line, request, expected, nexp);
            blocks++;
        }
        nexp = 0;
        g_nreplies = 0;
        req_line = lineno;
        have_request = 1;
        snprintf(request, sizeof request, "%s", line);
        uint8_t bytes[1024];
        size_t n = 0;
        if (strncmp(line, ">hex ", 5) == 0) {
            for (const char *s = line + 5; *s != '\0';) {
                if (*s == ' ') { s++; continue; }
                int hi = hexval(s[0]), lo = hexval(s[1]);
                if (hi < 0 || lo < 0) {
                    printf("FAIL vectors.txt:%d bad hex\n", lineno);
                    g_failures++;
                    break;
                }
                bytes[n++] = (uint8_t)(hi * 16 + lo);
                s += 2;
            }
        } else {
            const char *text = line[1] == ' ' ? line + 2 : line + 1;
            n = strlen(text);
            memcpy(bytes, text, n);
            bytes[n++] = '\n';
        }
        feed_bytes(bytes, n);
    }
    if (have_request) {
        check_block(req_line, request, expected, nexp);
        blocks++;
    }
    fclose(f);
    printf("test_proto: %d vector blocks from %s\n", blocks, path);
    return 0;
}

static void expect_str(const char *what, const char *got, const char *want)
{
    if (strcmp(got, want) != 0) {
        printf("FAIL %s: got '%s' want '%s'\n", what, got, want);
        g_failures++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s tests/vectors.txt\n", argv[0]);
        return 2;
    }
    proto_init(&g_p, &k_fake);
    if (run_vectors(argv[1]) != 0) {
        return 1;
    }

    char out[PROTO_REPLY_MAX];
    proto_banner(out);
    expect_str("banner", out, "READY rpea-trigger 1.0");
    proto_pulse_line(out, 4294967295u, 0u);
    expect_str("pulse line", out, "PULSE 4294967295 0");

    /* The interpreter survives every byte value in every position (no crash, no stuck state). */
    proto_init(&g_p, &k_fake);
    g_state = PROTO_STATE_IDLE;
    srand(1234);
    for (int i = 0; i < 200000; i++) {
        uint8_t b = (uint8_t)(rand() & 0xFF);
        (void)proto_feed(&g_p, b, out);
        if (strlen(out) >= PROTO_REPLY_MAX) {
            printf("FAIL fuzz: reply overflow\n");
            g_failures++;
            break;
        }
    }
    g_nreplies = 0;
    feed_bytes((const uint8_t *)"\nPING\n", 6);
    if (g_nreplies < 1 || strcmp(g_replies[g_nreplies - 1], "PONG") != 0) {
        printf("FAIL fuzz: no PONG after random bytes\n");
        g_failures++;
    }

    /* The busy check comes before parsing, CONFIG while idle reaches the hardware hook once. */
    proto_init(&g_p, &k_fake);
    g_state = PROTO_STATE_IDLE;
    uint32_t before = g_configures;
    g_nreplies = 0;
    feed_bytes((const uint8_t *)"CONFIG count=5\n", 15);
    if (g_configures != before + 1u) {
        printf("FAIL configure hook not called once\n");
        g_failures++;
    }
    g_flags = 0x05;
    g_nreplies = 0;
    feed_bytes((const uint8_t *)"CLEAR\n", 6);
    expect_str("clear", g_replies[0], "OK CLEAR err=0x05");

    if (g_failures != 0) {
        printf("test_proto: %d FAILED\n", g_failures);
        return 1;
    }
    printf("test_proto: ok\n");
    return 0;
}
