/*
 * The socket client both libraries share (client.h; docs/native.md, "Wire protocol").
 *
 * Each call: connect to the service's Unix-domain socket without blocking (1 s at most), send one
 * request line, read the answer's header (RC<TAB>LENGTH[<TAB>LENGTH]...<LF>) and its parts into
 * the caller's buffers (bounded, text NUL-terminated), close.  EOF before the promised bytes is
 * −11, never a partial line.
 *
 * A mutex serializes the calls of one process; the service serializes everything else.
 */
#define _GNU_SOURCE /* explicit_bzero, strcasecmp, MSG_NOSIGNAL */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "messages.h"

#define DEFAULT_SOCKET "/run/sscard/sscard.sock"
#define PROTOCOL "SSCARD1"
#define CONNECT_TIMEOUT_MS 900 /* so a full backlog is still -11 within 1 s */
#define DEFAULT_IO_TIMEOUT_S 30
#define MAX_REQUEST (4 * CLIENT_MAX_ARG + 256)
#define MAX_HEADER 96
#define MAX_PARTS 4

static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;

/* -- configuration from the environment -------------------------------------------------- */

long client_env_long(const char* name, long fallback, long low, long high) {
    const char* text = getenv(name);
    if (text == NULL || *text == '\0') {
        return fallback;
    }
    char* end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < low || value > high) {
        return fallback;
    }
    return value;
}

int client_utf8_mode(void) {
    const char* text = getenv("SSCARD_NATIVE_ENCODING");
    return text != NULL && (strcasecmp(text, "utf-8") == 0 || strcasecmp(text, "utf8") == 0);
}

static const char* socket_path(void) {
    const char* path = getenv("SSCARD_SOCKET");
    return (path != NULL && *path != '\0') ? path : DEFAULT_SOCKET;
}

/* -- output ------------------------------------------------------------------------------ */

void client_put(char* out, size_t size, const char* data, size_t length) {
    if (out == NULL || size == 0) {
        return;
    }
    if (length > size - 1) {
        length = size - 1;
    }
    memcpy(out, data, length);
    out[length] = '\0';
}

long client_fail(long rc, char* out, size_t size, const char* utf8, const char* gbk, const char* detail) {
    if (out == NULL || size == 0) {
        return rc;
    }
    const char* message = client_utf8_mode() ? utf8 : gbk;
    size_t length = strlen(message);
    client_put(out, size, message, length);
    if (detail != NULL && length < size - 1) {
        client_put(out + length, size - length, detail, strlen(detail));
    }
    return rc;
}

#define FAIL(rc, part, id, detail) CLIENT_FAIL((rc), (part)->data, (part)->size, id, (detail))

/* -- time -------------------------------------------------------------------------------- */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until deadline; 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline) {
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            return 0;
        }
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int n = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n > 0) {
            return 1;
        }
        if (n == 0) {
            return 0;
        }
        if (errno != EINTR) {
            return -1;
        }
    }
}

/* -- the request ------------------------------------------------------------------------- */

/* Append text escaped (\\ \t \n \r) so a field never contains TAB or LF; 0 on overflow. */
static int append_escaped(char* buf, size_t* used, size_t cap, const char* text) {
    for (const char* p = text; *p != '\0'; p++) {
        char esc = 0;
        switch (*p) {
        case '\\': esc = '\\'; break;
        case '\t': esc = 't'; break;
        case '\n': esc = 'n'; break;
        case '\r': esc = 'r'; break;
        default: break;
        }
        if (*used + 3 > cap) {
            return 0;
        }
        if (esc) {
            buf[(*used)++] = '\\';
            buf[(*used)++] = esc;
        } else {
            buf[(*used)++] = *p;
        }
    }
    return 1;
}

static int append_field(char* buf, size_t* used, size_t cap, const char* text) {
    if (*used + 1 > cap) {
        return 0;
    }
    buf[(*used)++] = '\t';
    return append_escaped(buf, used, cap, text);
}

/* -- one call ---------------------------------------------------------------------------- */

static int connect_service(const char* path, client_part* err, long* rc) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path) {
        *rc = FAIL(CLIENT_E_READER, err, NO_SERVICE, "socket path too long");
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *rc = FAIL(CLIENT_E_READER, err, NO_SERVICE, strerror(errno));
        return -1;
    }
    /* A Unix socket connects at once or fails at once (ENOENT, ECONNREFUSED), except when the
     * listener's backlog is full (EAGAIN): then try again for at most CONNECT_TIMEOUT_MS. */
    int64_t deadline = now_ms() + CONNECT_TIMEOUT_MS;
    int e = 0;
    while (connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) {
        e = errno;
        if ((e != EAGAIN && e != EINTR) || now_ms() >= deadline) {
            char detail[300];
            snprintf(detail, sizeof detail, "%s (%s)", path, strerror(e == EAGAIN ? ETIMEDOUT : e));
            *rc = FAIL(CLIENT_E_READER, err, NO_SERVICE, detail);
            close(fd);
            return -1;
        }
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return fd;
}

static int send_all(int fd, const char* data, size_t length, int64_t deadline) {
    while (length > 0) {
        ssize_t n = send(fd, data, length, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            length -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 1) {
                return 0;
            }
        } else {
            return -1;
        }
    }
    return 1;
}

/* Read up to want bytes; returns bytes read, -1 on error, -2 on timeout (EOF: fewer bytes). */
static ssize_t recv_some(int fd, char* buf, size_t want, int64_t deadline) {
    for (;;) {
        ssize_t n = recv(fd, buf, want, 0);
        if (n >= 0) {
            return n;
        }
        if (errno != EAGAIN && errno != EINTR) {
            return -1;
        }
        int w = wait_fd(fd, POLLIN, deadline);
        if (w == 0) {
            return -2;
        }
        if (w < 0) {
            return -1;
        }
    }
}

/* A decimal number that fills the whole field; 0 when it does not parse or exceeds max. */
static int parse_number(const char* text, long* value, long min, long max) {
    char* end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        return 0;
    }
    *value = v;
    return 1;
}

/* Parse "RC<TAB>L1[<TAB>L2]..." into rc and lengths[]; the number of lengths, or -1. */
static int parse_header(char* header, long* rc, size_t* lengths, int max_lengths) {
    char* save = NULL;
    char* field = strtok_r(header, "\t", &save);
    if (field == NULL || !parse_number(field, rc, -1000000000L, 1000000000L)) {
        return -1;
    }
    int count = 0;
    while ((field = strtok_r(NULL, "\t", &save)) != NULL) {
        long length = 0;
        if (count >= max_lengths || !parse_number(field, &length, 0, CLIENT_MAX_PART)) {
            return -1;
        }
        lengths[count++] = (size_t)length;
    }
    return count;
}

/* Read one part of length bytes into part (kept up to its capacity, the rest drained). */
static long read_part(int fd, client_part* part, size_t length, int64_t deadline, client_part* err) {
    size_t cap = part->data == NULL ? 0 : (part->binary ? part->size : (part->size > 0 ? part->size - 1 : 0));
    if (part->binary && length > cap) {
        return FAIL(CLIENT_E_COMMAND, err, BAD_ANSWER, NULL);
    }
    size_t keep = length < cap ? length : cap;
    size_t have = 0;
    char sink[256];
    while (have < length) {
        size_t want = length - have;
        char* target;
        if (have < keep) {
            target = part->data + have;
            want = keep - have;
        } else {
            target = sink;
            if (want > sizeof sink) {
                want = sizeof sink;
            }
        }
        ssize_t got = recv_some(fd, target, want, deadline);
        if (got == -2) {
            return FAIL(CLIENT_E_COMMAND, err, TIMEOUT, NULL);
        }
        if (got <= 0) {
            /* Never a partial line: the service died mid-answer. */
            return FAIL(CLIENT_E_READER, err, LOST, NULL);
        }
        have += (size_t)got;
    }
    if (part->data != NULL && !part->binary && part->size > 0) {
        part->data[keep] = '\0';
    }
    part->length = keep;
    return 0;
}

static void clear_parts(const client_request* r) {
    for (int i = 0; i < r->nparts; i++) {
        r->parts[i].length = 0;
        if (r->parts[i].data != NULL && r->parts[i].size > 0 && !r->parts[i].binary) {
            r->parts[i].data[0] = '\0';
        }
    }
}

long client_call(const client_request* r) {
    client_part* err = &r->parts[0];
    long io_s = client_env_long("SSCARD_TIMEOUT", DEFAULT_IO_TIMEOUT_S, 1, 3600);
    char request[MAX_REQUEST];
    char header[MAX_HEADER];
    size_t used = 0;
    long rc = CLIENT_E_COMMAND;
    int fd = -1;

    clear_parts(r);
    if (r->nparts < 1 || r->nparts > MAX_PARTS) {
        return CLIENT_E_PARAM;
    }
    for (int i = 0; i < r->nargs; i++) {
        if (strnlen(r->args[i], CLIENT_MAX_ARG + 1) > CLIENT_MAX_ARG) {
            return FAIL(CLIENT_E_PARAM, err, BAD_PARAM, "argument too long");
        }
    }
    int n = snprintf(request, sizeof request, PROTOCOL "\t%s\t%s\t%zu\t%ld", r->function,
                     client_utf8_mode() ? "utf-8" : "gbk", r->outsize, r->pin_timeout_s * 1000);
    used = (size_t)n;
    for (int i = 0; i < r->nargs; i++) {
        if (!append_field(request, &used, sizeof request - 1, r->args[i])) {
            explicit_bzero(request, sizeof request);
            return FAIL(CLIENT_E_PARAM, err, BAD_PARAM, "arguments too long");
        }
    }
    request[used++] = '\n';

    pthread_mutex_lock(&call_lock);
    fd = connect_service(socket_path(), err, &rc);
    if (fd < 0) {
        goto done;
    }
    int64_t deadline = now_ms() + (io_s + r->extra_wait_s) * 1000;
    int sent = send_all(fd, request, used, deadline);
    if (sent <= 0) {
        rc = sent == 0 ? FAIL(CLIENT_E_COMMAND, err, TIMEOUT, NULL) : FAIL(CLIENT_E_READER, err, LOST, NULL);
        goto done;
    }
    /* The header, read byte by byte (it is short) so no body byte is consumed. */
    size_t hlen = 0;
    for (;;) {
        ssize_t got = recv_some(fd, header + hlen, 1, deadline);
        if (got == -2) {
            rc = FAIL(CLIENT_E_COMMAND, err, TIMEOUT, NULL);
            goto done;
        }
        if (got <= 0) {
            rc = FAIL(CLIENT_E_READER, err, LOST, NULL);
            goto done;
        }
        if (header[hlen] == '\n') {
            header[hlen] = '\0';
            break;
        }
        if (++hlen >= sizeof header - 1) {
            rc = FAIL(CLIENT_E_COMMAND, err, BAD_ANSWER, NULL);
            goto done;
        }
    }
    long answer_rc = 0;
    size_t lengths[MAX_PARTS];
    int count = parse_header(header, &answer_rc, lengths, r->nparts);
    if (count < 1) {
        rc = FAIL(CLIENT_E_COMMAND, err, BAD_ANSWER, NULL);
        goto done;
    }
    for (int i = 0; i < count; i++) {
        long part_rc = read_part(fd, &r->parts[i], lengths[i], deadline, err);
        if (part_rc != 0) {
            for (int j = 1; j < r->nparts; j++) { /* no half answer: only the message stays */
                if (r->parts[j].data != NULL && r->parts[j].size > 0 && !r->parts[j].binary) {
                    r->parts[j].data[0] = '\0';
                }
                r->parts[j].length = 0;
            }
            rc = part_rc;
            goto done;
        }
    }
    rc = answer_rc;

done:
    if (fd >= 0) {
        close(fd);
    }
    pthread_mutex_unlock(&call_lock);
    explicit_bzero(request, sizeof request);
    explicit_bzero(header, sizeof header);
    return rc;
}
