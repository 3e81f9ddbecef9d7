/* Line protocol of the trigger, see proto.h and firmware/PROTOCOL.md. */
#include "proto.h"

#include <stddef.h>

/* ---- a tiny bounded string writer (no printf: small code on the AVR, same output on the host) */

typedef struct {
    char *buf;
    uint8_t len;
} writer_t;

static void w_str(writer_t *w, const char *s)
{
    while (*s != '\0' && w->len < PROTO_REPLY_MAX - 1u) {
        w->buf[w->len++] = *s++;
    }
    w->buf[w->len] = '\0';
}

static void w_strn(writer_t *w, const char *s, uint8_t n)
{
    while (n-- > 0u && *s != '\0' && w->len < PROTO_REPLY_MAX - 1u) {
        w->buf[w->len++] = *s++;
    }
    w->buf[w->len] = '\0';
}

static void w_u32(writer_t *w, uint32_t v)
{
    char tmp[11];
    uint8_t n = 0;
    do {
        tmp[n++] = (char)('0' + (uint8_t)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    while (n > 0u && w->len < PROTO_REPLY_MAX - 1u) {
        w->buf[w->len++] = tmp[--n];
    }
    w->buf[w->len] = '\0';
}

static void w_hex2(writer_t *w, uint8_t v)
{
    static const char digits[] = "0123456789ABCDEF";
    char s[5] = {'0', 'x', digits[v >> 4], digits[v & 0x0Fu], '\0'};
    w_str(w, s);
}

static void w_kv(writer_t *w, const char *key, uint32_t v)
{
    w_str(w, " ");
    w_str(w, key);
    w_str(w, "=");
    w_u32(w, v);
}

/* ---- helpers */

static const char *const k_err_messages[] = PROTO_ERR_MESSAGES;

static void reply_err(char *out, uint8_t code, const char *key)
{
    writer_t w = {out, 0};
    w_str(&w, "ERR ");
    w_u32(&w, code);
    w_str(&w, " ");
    w_str(&w, k_err_messages[code]);
    if (key != NULL) {
        w_str(&w, ": ");
        w_strn(&w, key, PROTO_MAX_ECHO);
    }
}

static char to_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* ASCII case-insensitive equality. */
static uint8_t ieq(const char *a, const char *b)
{
    while (*a != '\0' && *b != '\0') {
        if (to_lower(*a) != to_lower(*b)) {
            return 0;
        }
        a++;
        b++;
    }
    return (uint8_t)(*a == '\0' && *b == '\0');
}

/* Decimal digits only, 1..10 of them, value <= 2^32-1. */
static uint8_t parse_u32(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    uint8_t n = 0;
    if (*s == '\0') {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || ++n > 10u) {
            return 0;
        }
        uint32_t d = (uint32_t)(*s - '0');
        if (v > (0xFFFFFFFFul - d) / 10u) {
            return 0;
        }
        v = v * 10u + d;
    }
    *out = v;
    return 1;
}

static const char *state_name(uint8_t state)
{
    return state == PROTO_STATE_RUNNING ? "running" : (state == PROTO_STATE_DONE ? "done" : "idle");
}

static void w_config(writer_t *w, const proto_config_t *cfg)
{
    w_kv(w, "rate_mhz", cfg->rate_mhz);
    w_kv(w, "width_us", cfg->width_us);
    w_kv(w, "count", cfg->count);
    w_str(w, cfg->polarity_high ? " polarity=high" : " polarity=low");
    w_kv(w, "report", cfg->report);
}

/* ---- commands */

enum { KEY_RATE, KEY_WIDTH, KEY_COUNT, KEY_POLARITY, KEY_REPORT, N_KEYS };
static const char *const k_keys[N_KEYS] = {"rate_mhz", "width_us", "count", "polarity", "report"};
static const uint32_t k_min[N_KEYS] = {PROTO_RATE_MHZ_MIN, PROTO_WIDTH_US_MIN, PROTO_COUNT_MIN, 0,
                                       PROTO_REPORT_MIN};
static const uint32_t k_max[N_KEYS] = {PROTO_RATE_MHZ_MAX, PROTO_WIDTH_US_MAX, PROTO_COUNT_MAX, 1,
                                       PROTO_REPORT_MAX};

static void reply_config(proto_t *p, char *out)
{
    writer_t w = {out, 0};
    w_str(&w, "OK CONFIG");
    w_config(&w, &p->cfg);
    w_kv(&w, "period_cyc", p->plan.period_cyc);
    w_kv(&w, "width_cyc", p->plan.width_cyc);
    w_kv(&w, "achieved_rate_mhz", timing_achieved_rate_mhz(&p->plan));
    w_kv(&w, "achieved_width_us", timing_achieved_width_us(&p->plan));
}

static void cmd_config(proto_t *p, char **tok, uint8_t ntok, char *out)
{
    if (ntok == 1u) {
        reply_config(p, out);
        return;
    }
    proto_status_t st;
    p->hw->status(&st);
    if (st.state == PROTO_STATE_RUNNING) {
        reply_err(out, PROTO_ERR_BUSY, NULL);
        return;
    }
    proto_config_t cfg = p->cfg;
    uint8_t seen = 0;
    for (uint8_t i = 1; i < ntok; i++) {
        char *key = tok[i];
        char *val = key;
        while (*val != '\0' && *val != '=') {
            val++;
        }
        if (*val != '=' || val == key) {
            reply_err(out, PROTO_ERR_BAD_ARGUMENT, NULL);
            return;
        }
        *val++ = '\0';
        uint8_t k = 0;
        while (k < N_KEYS && !ieq(key, k_keys[k])) {
            k++;
        }
        if (k == N_KEYS) {
            reply_err(out, PROTO_ERR_UNKNOWN_KEY, key);
            return;
        }
        if (seen & (uint8_t)(1u << k)) {
            reply_err(out, PROTO_ERR_DUPLICATE_KEY, key);
            return;
        }
        seen |= (uint8_t)(1u << k);
        uint32_t v;
        if (k == KEY_POLARITY) {
            if (ieq(val, "high")) {
                v = 1;
            } else if (ieq(val, "low")) {
                v = 0;
            } else {
                reply_err(out, PROTO_ERR_BAD_VALUE, key);
                return;
            }
        } else if (!parse_u32(val, &v)) {
            reply_err(out, PROTO_ERR_BAD_VALUE, key);
            return;
        } else if (v < k_min[k] || v > k_max[k]) {
            reply_err(out, PROTO_ERR_OUT_OF_RANGE, key);
            return;
        }
        switch (k) {
        case KEY_RATE: cfg.rate_mhz = v; break;
        case KEY_WIDTH: cfg.width_us = v; break;
        case KEY_COUNT: cfg.count = v; break;
        case KEY_POLARITY: cfg.polarity_high = (uint8_t)v; break;
        default: cfg.report = (uint8_t)v; break;
        }
    }
    timer_plan_t plan;
    uint8_t err = timing_plan(cfg.rate_mhz, cfg.width_us, &plan);
    if (err != 0u) {
        reply_err(out, err, NULL);
        return;
    }
    p->cfg = cfg;
    p->plan = plan;
    p->hw->configure(&p->cfg, &p->plan);
    reply_config(p, out);
}

static void cmd_status(proto_t *p, char *out)
{
    proto_status_t st;
    p->hw->status(&st);
    writer_t w = {out, 0};
    w_str(&w, "STATUS state=");
    w_str(&w, state_name(st.state));
    w_kv(&w, "pulses", st.pulses);
    w_kv(&w, "t_us", st.t_us);
    w_config(&w, &p->cfg);
    w_str(&w, " err=");
    w_hex2(&w, st.err_flags);
}

static void execute(proto_t *p, char *line, char *out)
{
    char *tok[PROTO_MAX_LINE / 2u + 1u];
    uint8_t ntok = 0;
    char *s = line;
    while (*s != '\0') {
        while (*s == ' ') {
            *s++ = '\0';
        }
        if (*s == '\0') {
            break;
        }
        tok[ntok++] = s;
        while (*s != '\0' && *s != ' ') {
            s++;
        }
    }
    if (ntok == 0u) {
        out[0] = '\0';
        return;
    }
    const char *cmd = tok[0];
    if (ieq(cmd, "CONFIG")) {
        cmd_config(p, tok, ntok, out);
        return;
    }
    uint8_t known = (uint8_t)(ieq(cmd, "PING") || ieq(cmd, "VERSION") || ieq(cmd, "STATUS") ||
                              ieq(cmd, "START") || ieq(cmd, "STOP") || ieq(cmd, "CLEAR"));
    if (!known) {
        reply_err(out, PROTO_ERR_UNKNOWN_COMMAND, NULL);
        return;
    }
    if (ntok > 1u) {
        reply_err(out, PROTO_ERR_BAD_ARGUMENT, NULL);
        return;
    }
    writer_t w = {out, 0};
    if (ieq(cmd, "PING")) {
        w_str(&w, "PONG");
    } else if (ieq(cmd, "VERSION")) {
        w_str(&w, "VERSION " PROTO_NAME " " PROTO_VERSION " fw=" PROTO_FIRMWARE_VERSION " board=");
        w_str(&w, p->hw->board);
        w_kv(&w, "f_cpu_hz", PROTO_F_CPU_HZ);
    } else if (ieq(cmd, "STATUS")) {
        cmd_status(p, out);
    } else if (ieq(cmd, "START")) {
        proto_status_t st;
        p->hw->status(&st);
        if (st.state == PROTO_STATE_RUNNING) {
            reply_err(out, PROTO_ERR_BUSY, NULL);
            return;
        }
        uint32_t t_us = p->hw->start(&p->cfg, &p->plan);
        w_str(&w, "OK START");
        w_kv(&w, "t_us", t_us);
    } else if (ieq(cmd, "STOP")) {
        uint32_t pulses = p->hw->stop();
        w_str(&w, "OK STOP");
        w_kv(&w, "pulses", pulses);
    } else {
        uint8_t flags = p->hw->clear();
        w_str(&w, "OK CLEAR err=");
        w_hex2(&w, flags);
    }
}

/* ---- public */

void proto_init(proto_t *p, const proto_hw_t *hw)
{
    p->hw = hw;
    p->cfg.rate_mhz = PROTO_DEFAULT_RATE_MHZ;
    p->cfg.width_us = PROTO_DEFAULT_WIDTH_US;
    p->cfg.count = PROTO_DEFAULT_COUNT;
    p->cfg.polarity_high = PROTO_DEFAULT_POLARITY_HIGH;
    p->cfg.report = (uint8_t)PROTO_DEFAULT_REPORT;
    (void)timing_plan(p->cfg.rate_mhz, p->cfg.width_us, &p->plan);
    p->len = 0;
    p->too_long = 0;
    p->bad_char = 0;
    hw->configure(&p->cfg, &p->plan);
}

uint8_t proto_feed(proto_t *p, uint8_t byte, char *out)
{
    if (byte == '\r') {
        return 0;
    }
    if (byte != '\n') {
        if (p->len >= PROTO_MAX_LINE) {
            p->too_long = 1;
            return 0;
        }
        if (byte == '\t') {
            byte = ' ';
        } else if (byte < 0x20u || byte > 0x7Eu) {
            p->bad_char = 1;
            byte = '?';
        }
        p->line[p->len++] = (char)byte;
        return 0;
    }
    uint8_t too_long = p->too_long;
    uint8_t bad_char = p->bad_char;
    p->line[p->len] = '\0';
    p->len = 0;
    p->too_long = 0;
    p->bad_char = 0;
    if (too_long) {
        reply_err(out, PROTO_ERR_LINE_TOO_LONG, NULL);
        return 1;
    }
    if (bad_char) {
        reply_err(out, PROTO_ERR_BAD_CHARACTER, NULL);
        return 1;
    }
    execute(p, p->line, out);
    return (uint8_t)(out[0] != '\0');
}

void proto_banner(char *out)
{
    writer_t w = {out, 0};
    w_str(&w, "READY " PROTO_NAME " " PROTO_VERSION);
}

void proto_pulse_line(char *out, uint32_t index, uint32_t t_us)
{
    writer_t w = {out, 0};
    w_str(&w, "PULSE ");
    w_u32(&w, index);
    w_str(&w, " ");
    w_u32(&w, t_us);
}
