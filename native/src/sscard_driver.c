/*
 * libSSCardDriver.so: the national reader interface as a client of the sscard service.
 *
 * Each call: check the arguments, connect to the service's Unix-domain socket (1 s at most),
 * send one request line, read one answer (RC<TAB>LENGTH<LF> + LENGTH bytes), copy it into
 * pOutInfo (bounded, NUL-terminated) and close.  docs/native.md, "Wire protocol".
 *
 * A mutex serializes the calls of one process; the service serializes everything else.
 */
#define _GNU_SOURCE /* explicit_bzero, strcasecmp, MSG_NOSIGNAL */
#include "SSCardDriver.h"

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

#define EXPORT __attribute__((visibility("default")))

#define DEFAULT_SOCKET "/run/sscard/sscard.sock"
#define PROTOCOL "SSCARD1"
#define CONNECT_TIMEOUT_MS 900 /* so a full backlog is still -11 within 1 s */
#define DEFAULT_IO_TIMEOUT_S 30
#define DEFAULT_PIN_TIMEOUT_S 60
#define MAX_OUTINFO (1024 * 1024)
#define MAX_ARG 4096
#define MAX_REQUEST (4 * MAX_ARG + 256)
#define MAX_HEADER 64

static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;

/* -- configuration from the environment -------------------------------------------------- */

static long env_long(const char* name, long fallback, long low, long high) {
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

static size_t out_size(void) { return (size_t)env_long("SSCARD_OUTINFO_SIZE", SSCARD_OUTINFO_SIZE, 2, MAX_OUTINFO); }

static int utf8_mode(void) {
    const char* text = getenv("SSCARD_NATIVE_ENCODING");
    return text != NULL && (strcasecmp(text, "utf-8") == 0 || strcasecmp(text, "utf8") == 0);
}

static const char* socket_path(void) {
    const char* path = getenv("SSCARD_SOCKET");
    return (path != NULL && *path != '\0') ? path : DEFAULT_SOCKET;
}

/* -- output ------------------------------------------------------------------------------ */

/* Copy at most size-1 bytes and terminate; never past size. */
static void put(char* out, size_t size, const char* data, size_t length) {
    if (length > size - 1) {
        length = size - 1;
    }
    memcpy(out, data, length);
    out[length] = '\0';
}

/* A library message (in the caller's encoding) followed by an ASCII detail. */
static long fail(long rc, char* out, const char* utf8, const char* gbk, const char* detail) {
    size_t size = out_size();
    const char* message = utf8_mode() ? utf8 : gbk;
    size_t length = strlen(message);
    put(out, size, message, length);
    if (detail != NULL && length < size - 1) {
        put(out + length, size - length, detail, strlen(detail));
    }
    return rc;
}

#define FAIL(rc, out, id, detail) fail((rc), (out), MSG_##id##_UTF8, MSG_##id##_GBK, (detail))

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

static int connect_service(const char* path, char* out, long* rc) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path) {
        *rc = FAIL(SSCARD_E_READER, out, NO_SERVICE, "socket path too long");
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *rc = FAIL(SSCARD_E_READER, out, NO_SERVICE, strerror(errno));
        return -1;
    }
    /* A Unix socket connects at once or fails at once (ENOENT, ECONNREFUSED), except when the
     * listener's backlog is full (EAGAIN): then try again for at most CONNECT_TIMEOUT_MS. */
    int64_t deadline = now_ms() + CONNECT_TIMEOUT_MS;
    int err = 0;
    while (connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) {
        err = errno;
        if ((err != EAGAIN && err != EINTR) || now_ms() >= deadline) {
            char detail[300];
            snprintf(detail, sizeof detail, "%s (%s)", path, strerror(err == EAGAIN ? ETIMEDOUT : err));
            *rc = FAIL(SSCARD_E_READER, out, NO_SERVICE, detail);
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

/*
 * Send FUNCTION with its arguments and put the answer into out.  pin: the call may wait for a
 * PIN, so the answer may take the PIN timeout longer.
 */
static long call(const char* function, int nargs, const char* const* args, char* out, int pin) {
    size_t size = out_size();
    long io_s = env_long("SSCARD_TIMEOUT", DEFAULT_IO_TIMEOUT_S, 1, 3600);
    long pin_s = env_long("SSCARD_PIN_TIMEOUT", DEFAULT_PIN_TIMEOUT_S, 1, 3600);
    char request[MAX_REQUEST];
    char header[MAX_HEADER];
    size_t used = 0;
    long rc = SSCARD_E_COMMAND;
    int fd = -1;

    for (int i = 0; i < nargs; i++) {
        if (strnlen(args[i], MAX_ARG + 1) > MAX_ARG) {
            return FAIL(SSCARD_E_PARAM, out, BAD_PARAM, "argument too long");
        }
    }
    int n = snprintf(request, sizeof request, PROTOCOL "\t%s\t%s\t%zu\t%ld", function, utf8_mode() ? "utf-8" : "gbk",
                     size, pin_s * 1000);
    used = (size_t)n;
    for (int i = 0; i < nargs; i++) {
        if (!append_field(request, &used, sizeof request - 1, args[i])) {
            explicit_bzero(request, sizeof request);
            return FAIL(SSCARD_E_PARAM, out, BAD_PARAM, "arguments too long");
        }
    }
    request[used++] = '\n';

    pthread_mutex_lock(&call_lock);
    fd = connect_service(socket_path(), out, &rc);
    if (fd < 0) {
        goto done;
    }
    int64_t deadline = now_ms() + io_s * 1000 + (pin ? pin_s * 1000 : 0);
    int sent = send_all(fd, request, used, deadline);
    if (sent <= 0) {
        rc = sent == 0 ? FAIL(SSCARD_E_COMMAND, out, TIMEOUT, NULL) : FAIL(SSCARD_E_READER, out, LOST, NULL);
        goto done;
    }
    /* The header: RC<TAB>LENGTH<LF>, read byte by byte (it is short) so no body byte is consumed. */
    size_t hlen = 0;
    for (;;) {
        ssize_t got = recv_some(fd, header + hlen, 1, deadline);
        if (got == -2) {
            rc = FAIL(SSCARD_E_COMMAND, out, TIMEOUT, NULL);
            goto done;
        }
        if (got <= 0) {
            rc = FAIL(SSCARD_E_READER, out, LOST, NULL);
            goto done;
        }
        if (header[hlen] == '\n') {
            header[hlen] = '\0';
            break;
        }
        if (++hlen >= sizeof header - 1) {
            rc = FAIL(SSCARD_E_COMMAND, out, BAD_ANSWER, NULL);
            goto done;
        }
    }
    char* tab = strchr(header, '\t');
    char* end = NULL;
    if (tab == NULL) {
        rc = FAIL(SSCARD_E_COMMAND, out, BAD_ANSWER, NULL);
        goto done;
    }
    *tab = '\0';
    errno = 0;
    long answer_rc = strtol(header, &end, 10);
    if (errno != 0 || end == header || *end != '\0') {
        rc = FAIL(SSCARD_E_COMMAND, out, BAD_ANSWER, NULL);
        goto done;
    }
    unsigned long length = strtoul(tab + 1, &end, 10);
    if (errno != 0 || end == tab + 1 || *end != '\0' || length > MAX_OUTINFO) {
        rc = FAIL(SSCARD_E_COMMAND, out, BAD_ANSWER, NULL);
        goto done;
    }
    /* The body goes straight into out (at most size-1 bytes); anything beyond is drained. */
    size_t keep = length < size - 1 ? (size_t)length : size - 1;
    size_t have = 0;
    char sink[256];
    while (have < length) {
        size_t want = length - have;
        char* target;
        if (have < keep) {
            target = out + have;
            want = keep - have;
        } else {
            target = sink;
            if (want > sizeof sink) {
                want = sizeof sink;
            }
        }
        ssize_t got = recv_some(fd, target, want, deadline);
        if (got == -2) {
            rc = FAIL(SSCARD_E_COMMAND, out, TIMEOUT, NULL);
            goto done;
        }
        if (got <= 0) {
            /* Never a partial line: the service died mid-answer. */
            rc = FAIL(SSCARD_E_READER, out, LOST, NULL);
            goto done;
        }
        have += (size_t)got;
    }
    out[keep] = '\0';
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

/* -- argument checks --------------------------------------------------------------------- */

static long check_itype(int iType, char* out) {
    if (iType < SSCARD_ITYPE_CONTACT || iType > SSCARD_ITYPE_AUTO_CONTACTLESS_FIRST) {
        return FAIL(SSCARD_E_PARAM, out, BAD_PARAM, "iType must be 1 to 4");
    }
    return SSCARD_OK;
}

static long with_itype(const char* function, int iType, char* out, int pin) {
    if (out == NULL) {
        return SSCARD_E_PARAM;
    }
    long rc = check_itype(iType, out);
    if (rc != SSCARD_OK) {
        return rc;
    }
    char itype[16];
    snprintf(itype, sizeof itype, "%d", iType);
    const char* args[] = {itype};
    return call(function, 1, args, out, pin);
}

/* Not supported: still asks the service, so a stopped service is -11 for every function (issue
 * 13) and the service's answer (-13 and its message) is the one place that says so. */
static long unsupported(const char* function, char* out) {
    if (out == NULL) {
        return SSCARD_E_PARAM;
    }
    long rc = call(function, 0, NULL, out, 0);
    if (rc == SSCARD_OK) { /* an older or newer service that knows the name: still not ours */
        return FAIL(SSCARD_E_NOT_SUPPORTED, out, NOT_SUPPORTED, function);
    }
    return rc;
}

/* -- the national functions -------------------------------------------------------------- */

EXPORT long iReadCardBas(int iType, char* pOutInfo) { return with_itype("iReadCardBas", iType, pOutInfo, 0); }

EXPORT long iReadCardBas_HSM_Step1(int iType, char* pOutInfo) {
    return with_itype("iReadCardBas_HSM_Step1", iType, pOutInfo, 0);
}

EXPORT long iReadCardBas_HSM_Step2(char* pKey, char* pOutInfo) {
    if (pOutInfo == NULL) {
        return SSCARD_E_PARAM;
    }
    if (pKey == NULL) {
        return FAIL(SSCARD_E_PARAM, pOutInfo, BAD_PARAM, "pKey is NULL");
    }
    const char* args[] = {pKey};
    return call("iReadCardBas_HSM_Step2", 1, args, pOutInfo, 0);
}

EXPORT long iVerifyPIN(int iType, char* pOutInfo) { return with_itype("iVerifyPIN", iType, pOutInfo, 1); }

EXPORT long iChangePIN(int iType, char* pOutInfo) { return with_itype("iChangePIN", iType, pOutInfo, 1); }

EXPORT long iReadCard(int iType, int iAuthType, char* pCardInfo, char* pFileAddr, char* pOutInfo) {
    (void)iType, (void)iAuthType, (void)pCardInfo, (void)pFileAddr;
    return unsupported("iReadCard", pOutInfo);
}

EXPORT long iWriteCard(int iType, char* pCardInfo, char* pFileAddr, char* pWriteData, char* pOutInfo) {
    (void)iType, (void)pCardInfo, (void)pFileAddr, (void)pWriteData;
    return unsupported("iWriteCard", pOutInfo);
}

EXPORT long iReloadPIN(int iType, char* pCardInfo, char* pOutInfo) {
    (void)iType, (void)pCardInfo;
    return unsupported("iReloadPIN", pOutInfo);
}

EXPORT long iUnblockPIN(int iType, char* pCardInfo, char* pOutInfo) {
    (void)iType, (void)pCardInfo;
    return unsupported("iUnblockPIN", pOutInfo);
}

EXPORT long iDoDebit(int iType, char* pCardInfo, char* pPayInfo, char* pOutInfo) {
    (void)iType, (void)pCardInfo, (void)pPayInfo;
    return unsupported("iDoDebit", pOutInfo);
}

EXPORT long iReadDebitRecord(int iType, char* pOutInfo) {
    (void)iType;
    return unsupported("iReadDebitRecord", pOutInfo);
}

EXPORT long PKI_SignData(char* pUserPin, char* pInData, int iType, char* pOutInfo) {
    /* The PIN is the caller's buffer; this library never copies it. */
    (void)pUserPin, (void)pInData, (void)iType;
    return unsupported("PKI_SignData", pOutInfo);
}

EXPORT long PKI_VerifySign(char* pInData, char* pSignData, int iType, char* pOutInfo) {
    (void)pInData, (void)pSignData, (void)iType;
    return unsupported("PKI_VerifySign", pOutInfo);
}

EXPORT long iReadIdentityCard(int iType, char* pOutInfo) {
    (void)iType;
    return unsupported("iReadIdentityCard", pOutInfo);
}

EXPORT long iGetDeviceInfo(char* pOutInfo) { return unsupported("iGetDeviceInfo", pOutInfo); }
