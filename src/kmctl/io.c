/* io.c - kmctl's binary-safe reading and writing: stdin, files, secrets, the km1: text form. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kmctl.h"

/* Longest passphrase libkm accepts (km_open_options::passphrase_len). */
#define KMCTL_PASSPHRASE_MAX 1024

void kmctl_buf_free(struct kmctl_buf *b)
{
    if (b->p != NULL) {
        km_memzero(b->p, b->cap);
        free(b->p);
    }
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Grows b to hold at least need bytes; the old copy is wiped (it may hold plaintext). */
static int buf_reserve(struct kmctl_buf *b, size_t need)
{
    uint8_t *np;
    size_t cap = b->cap ? b->cap : 65536;

    if (need <= b->cap)
        return 0;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    np = malloc(cap);
    if (np == NULL)
        return -1;
    if (b->len > 0)
        memcpy(np, b->p, b->len);
    if (b->p != NULL) {
        km_memzero(b->p, b->cap);
        free(b->p);
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

static ssize_t read_some(int fd, void *p, size_t n)
{
    ssize_t r;

    do
        r = read(fd, p, n);
    while (r < 0 && errno == EINTR);
    return r;
}

/*
 * Reads fd to its end into out (which must be empty). More than max bytes is
 * an input error. `what` names the input in messages. Returns an exit code.
 */
int kmctl_read_fd(int fd, const char *what, size_t max, struct kmctl_buf *out)
{
    struct stat st;
    size_t want = 0;

    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        if ((uint64_t)st.st_size > (uint64_t)max)
            return kmctl_error(KMCTL_EXIT_USAGE, "%s is larger than %zu bytes", what, max);
        want = (size_t)st.st_size + 1; /* + 1 to see the end without another grow */
    }
    if (buf_reserve(out, want ? want : 65536) != 0)
        return kmctl_error(KMCTL_EXIT_OTHER, "reading %s: out of memory", what);
    for (;;) {
        ssize_t r;
        if (out->len == out->cap) {
            if (out->len > max)
                break;
            if (buf_reserve(out, out->cap + 1) != 0)
                return kmctl_error(KMCTL_EXIT_OTHER, "reading %s: out of memory", what);
        }
        r = read_some(fd, out->p + out->len, out->cap - out->len);
        if (r < 0)
            return kmctl_error(KMCTL_EXIT_OTHER, "reading %s: %s", what, strerror(errno));
        if (r == 0)
            break;
        out->len += (size_t)r;
        if (out->len > max)
            break;
    }
    if (out->len > max)
        return kmctl_error(KMCTL_EXIT_USAGE, "%s is larger than %zu bytes", what, max);
    return KMCTL_EXIT_OK;
}

static int open_input(const char *path, int *fd)
{
    if (strcmp(path, "-") == 0) {
        *fd = STDIN_FILENO;
        return KMCTL_EXIT_OK;
    }
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return kmctl_error(KMCTL_EXIT_USAGE, "cannot open '%s': %s", path, strerror(errno));
    return KMCTL_EXIT_OK;
}

/* Reads a file named on the command line ("-" = stdin). Returns an exit code. */
int kmctl_read_file(const char *path, size_t max, struct kmctl_buf *out)
{
    char what[300];
    int fd, rc;

    if ((rc = open_input(path, &fd)) != KMCTL_EXIT_OK)
        return rc;
    snprintf(what, sizeof what, "'%s'", path);
    rc = kmctl_read_fd(fd, what, max, out);
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}

/*
 * Reads a small secret file (a passphrase, key material) straight into libkm's
 * secure memory: no copy of it is left in ordinary memory. Returns an exit code.
 */
int kmctl_read_secret(const char *path, size_t max, km_secret **out, size_t *len)
{
    km_secret *s = NULL;
    size_t n = 0;
    int fd, rc;

    *out = NULL;
    *len = 0;
    if ((rc = open_input(path, &fd)) != KMCTL_EXIT_OK)
        return rc;
    if ((rc = km_secret_new(&s, max + 1)) != KM_OK) {
        rc = kmctl_lib_error(rc, "reading '%s'", path);
        goto out;
    }
    while (n <= max) {
        ssize_t r = read_some(fd, km_secret_data(s) + n, max + 1 - n);
        if (r < 0) {
            rc = kmctl_error(KMCTL_EXIT_USAGE, "reading '%s': %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max) {
        rc = kmctl_error(KMCTL_EXIT_USAGE, "'%s' is larger than %zu bytes", path, max);
        goto out;
    }
    *out = s;
    *len = n;
    s = NULL;
    rc = KMCTL_EXIT_OK;
out:
    km_secret_free(s);
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}

/* Writes all n bytes to stdout. Returns an exit code. */
int kmctl_write(const void *p, size_t n)
{
    const uint8_t *c = p;

    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return kmctl_error(KMCTL_EXIT_OTHER, "writing the output: %s",
                               w < 0 ? strerror(errno) : "nothing written");
        c += w;
        n -= (size_t)w;
    }
    return KMCTL_EXIT_OK;
}

/* Flushes and closes stdout, so that a late write error is reported. */
int kmctl_finish_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return kmctl_error(KMCTL_EXIT_OTHER, "writing the output: %s", strerror(errno));
    if (fclose(stdout) != 0)
        return kmctl_error(KMCTL_EXIT_OTHER, "closing the output: %s", strerror(errno));
    return KMCTL_EXIT_OK;
}

/*
 * The vault passphrase, from --passphrase-file FILE (one trailing newline
 * stripped) or else KM_PASSPHRASE; never from an argument. Returns an exit code.
 */
int kmctl_passphrase(const char *file, km_secret **out, size_t *len)
{
    const char *env;
    int rc;

    *out = NULL;
    *len = 0;
    if (file != NULL) {
        struct stat st;
        if (strcmp(file, "-") != 0 && stat(file, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)))
            kmctl_warn("passphrase file '%s' is readable by group or others (chmod 600 it)", file);
        if ((rc = kmctl_read_secret(file, KMCTL_PASSPHRASE_MAX + 1, out, len)) != KMCTL_EXIT_OK)
            return rc;
        if (*len > 0 && km_secret_data(*out)[*len - 1] == '\n')
            km_secret_data(*out)[--*len] = '\0';
        if (*len == 0 || *len > KMCTL_PASSPHRASE_MAX) {
            km_secret_free(*out);
            *out = NULL;
            return kmctl_error(KMCTL_EXIT_USAGE, "passphrase file '%s': the passphrase must be 1 to %d bytes",
                               file, KMCTL_PASSPHRASE_MAX);
        }
        return KMCTL_EXIT_OK;
    }
    env = getenv("KM_PASSPHRASE");
    if (env == NULL || env[0] == '\0')
        return kmctl_error(KMCTL_EXIT_USAGE, "no passphrase: use --passphrase-file FILE or set KM_PASSPHRASE");
    if (strlen(env) > KMCTL_PASSPHRASE_MAX)
        return kmctl_error(KMCTL_EXIT_USAGE, "KM_PASSPHRASE: the passphrase must be 1 to %d bytes",
                           KMCTL_PASSPHRASE_MAX);
    if ((rc = km_secret_from(out, env, strlen(env))) != KM_OK)
        return kmctl_lib_error(rc, "reading KM_PASSPHRASE");
    *len = strlen(env);
    return KMCTL_EXIT_OK;
}

/* If b holds the km1: text form, replaces it by the binary it encodes. Returns an exit code. */
int kmctl_text_decode_if(struct kmctl_buf *b)
{
    struct kmctl_buf bin = { NULL, 0, 0 };
    size_t n = 0;
    int rc;

    if (b->len < 4 || memcmp(b->p, "km1:", 4) != 0)
        return KMCTL_EXIT_OK;
    if (buf_reserve(&bin, b->len) != 0)
        return kmctl_error(KMCTL_EXIT_OTHER, "decoding the km1: text: out of memory");
    rc = km_text_decode((const char *)b->p, b->len, bin.p, bin.cap, &n);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "decoding the km1: text");
        kmctl_buf_free(&bin);
        return rc;
    }
    bin.len = n;
    kmctl_buf_free(b);
    *b = bin;
    return KMCTL_EXIT_OK;
}

/* Writes bin in the km1: text form plus a newline. Returns an exit code. */
int kmctl_text_write(const uint8_t *bin, size_t n)
{
    size_t cap = 4 + (n / 3 + 1) * 4 + 2, len = 0;
    char *text = malloc(cap);
    int rc;

    if (text == NULL)
        return kmctl_error(KMCTL_EXIT_OTHER, "encoding the km1: text: out of memory");
    rc = km_text_encode(bin, n, text, cap - 1, &len);
    if (rc != KM_OK) {
        rc = kmctl_lib_error(rc, "encoding the km1: text");
        free(text);
        return rc;
    }
    text[len] = '\n';
    rc = kmctl_write(text, len + 1);
    free(text);
    return rc;
}
