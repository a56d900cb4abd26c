/* config.c - kmd's configuration file (docs/KMD.md): one `key = value` per
 * line, '#' starts a comment, blank lines are ignored; an unknown key, a
 * repeated key or a bad value is an error naming the line. */
#include "kmd.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t cap, const char *path, unsigned line, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(err, cap, "%s:%u: ", path, line);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static char *trim(char *s)
{
    char *e;
    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int num(const char *v, int base, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end;
    unsigned long x;
    if (*v == '\0' || *v == '-')
        return -1;
    errno = 0;
    x = strtoul(v, &end, base);
    if (errno != 0 || *end != '\0' || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int str(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

const char *kmd_config_cn_principal(const kmd_config *c, const char *cn)
{
    size_t i;
    for (i = 0; i < c->ncn; i++)
        if (strcmp(c->cnmap[i].cn, cn) == 0)
            return c->cnmap[i].principal;
    return NULL;
}

const char *kmd_config_principal(const kmd_config *c, uid_t uid)
{
    size_t i;
    for (i = 0; i < c->nmap; i++)
        if (c->map[i].uid == uid)
            return c->map[i].principal;
    return NULL;
}

int kmd_config_load(const char *path, kmd_config *c, char *err, size_t cap)
{
    static const char *const keys[] = { "vault", "socket", "socket_mode", "passphrase_file",
                                        "slot_backend", "slot_config", "max_connections",
                                        "idle_timeout_ms", "request_timeout_ms", "max_message",
                                        "refresh_ms", "audit_file", "unseal", "tls_listen", "tls_ca",
                                        "tls_cert", "tls_key" };
    unsigned seen = 0, line = 0;
    char buf[8192];
    FILE *f;

    memset(c, 0, sizeof *c);
    c->socket_mode = 0660;
    c->max_connections = 64;
    c->idle_timeout_ms = 30000;
    c->request_timeout_ms = 5000;
    c->max_message = 1u << 20;
    c->refresh_ms = 100;
    if ((f = fopen(path, "r")) == NULL)
        return fail(err, cap, path, 0, "%s", strerror(errno));
    while (fgets(buf, sizeof buf, f) != NULL) {
        char *k, *v, *eq, *hash;
        unsigned long x;
        size_t i;
        int bad = 0;

        line++;
        if (strchr(buf, '\n') == NULL && !feof(f)) {
            fclose(f);
            return fail(err, cap, path, line, "line too long");
        }
        if ((hash = strchr(buf, '#')) != NULL)
            *hash = '\0';
        k = trim(buf);
        if (*k == '\0')
            continue;
        if ((eq = strchr(k, '=')) == NULL) {
            fclose(f);
            return fail(err, cap, path, line, "expected key = value");
        }
        *eq = '\0';
        k = trim(k);
        v = trim(eq + 1);
        if (strncmp(k, "principal.", 10) == 0) {
            if (num(k + 10, 10, 0, (uid_t)-2, &x) != 0 || c->nmap == KMD_MAP_MAX
                || kmd_config_principal(c, (uid_t)x) != NULL
                || str(c->map[c->nmap].principal, sizeof c->map[0].principal, v) != 0) {
                fclose(f);
                return fail(err, cap, path, line, "principal.<uid> = <principal name>, "
                                                  "each uid once, at most %d", KMD_MAP_MAX);
            }
            c->map[c->nmap++].uid = (uid_t)x;
            continue;
        }
        if (strncmp(k, "tls_principal.", 14) == 0) {
            if (c->ncn == KMD_MAP_MAX || kmd_config_cn_principal(c, k + 14) != NULL
                || str(c->cnmap[c->ncn].cn, sizeof c->cnmap[0].cn, k + 14) != 0
                || str(c->cnmap[c->ncn].principal, sizeof c->cnmap[0].principal, v) != 0) {
                fclose(f);
                return fail(err, cap, path, line, "tls_principal.<certificate CN> = <principal "
                                                  "name>, each CN once, at most %d", KMD_MAP_MAX);
            }
            c->ncn++;
            continue;
        }
        for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (strcmp(k, keys[i]) == 0)
                break;
        if (i == sizeof keys / sizeof keys[0]) {
            fclose(f);
            return fail(err, cap, path, line, "unknown key '%s'", k);
        }
        if (seen & (1u << i)) {
            fclose(f);
            return fail(err, cap, path, line, "'%s' given twice", k);
        }
        seen |= 1u << i;
        switch (i) {
        case 0: bad = str(c->vault, sizeof c->vault, v); break;
        case 1: bad = str(c->socket_path, sizeof c->socket_path, v) || v[0] != '/'; break;
        case 2: bad = num(v, 8, 0, 0777, &x); c->socket_mode = (unsigned)x; break;
        case 3: bad = str(c->passphrase_file, sizeof c->passphrase_file, v); break;
        case 4: bad = str(c->slot_backend, sizeof c->slot_backend, v); break;
        case 5: bad = str(c->slot_config, sizeof c->slot_config, v); break;
        case 6: bad = num(v, 10, 1, 4096, &x); c->max_connections = (unsigned)x; break;
        case 7: bad = num(v, 10, 100, 86400000, &x); c->idle_timeout_ms = (unsigned)x; break;
        case 8: bad = num(v, 10, 100, 600000, &x); c->request_timeout_ms = (unsigned)x; break;
        case 9: bad = num(v, 10, 1024, 64u << 20, &x); c->max_message = x; break;
        case 10: bad = num(v, 10, 1, 5000, &x); c->refresh_ms = (uint32_t)x; break;
        case 11: bad = str(c->audit_file, sizeof c->audit_file, v); break;
        case 12: bad = strcmp(v, "shares") != 0; c->unseal = 1; break;
        case 13: bad = str(c->tls_listen, sizeof c->tls_listen, v); break;
        case 14: bad = str(c->tls_ca, sizeof c->tls_ca, v); break;
        case 15: bad = str(c->tls_cert, sizeof c->tls_cert, v); break;
        case 16: bad = str(c->tls_key, sizeof c->tls_key, v); break;
        }
        if (bad) {
            fclose(f);
            return fail(err, cap, path, line, "bad value for '%s'", k);
        }
    }
    fclose(f);
    if (c->vault[0] == '\0' || c->socket_path[0] == '\0')
        return fail(err, cap, path, line, "'vault' and 'socket' are required");
    if ((c->passphrase_file[0] != '\0') + (c->slot_backend[0] != '\0') + c->unseal != 1)
        return fail(err, cap, path, line, "give exactly one of 'passphrase_file', "
                                          "'slot_backend' and 'unseal = shares'");
    if ((c->tls_listen[0] != '\0')
        != (c->tls_ca[0] != '\0' && c->tls_cert[0] != '\0' && c->tls_key[0] != '\0')
        || (c->tls_listen[0] == '\0' && (c->tls_ca[0] || c->tls_cert[0] || c->tls_key[0])))
        return fail(err, cap, path, line, "'tls_listen' needs 'tls_ca', 'tls_cert' and "
                                          "'tls_key', and they need it");
    if (c->slot_config[0] != '\0' && c->slot_backend[0] == '\0')
        return fail(err, cap, path, line, "'slot_config' needs 'slot_backend'");
    return 0;
}
