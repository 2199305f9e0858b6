/*
 * The client side of the sscard service's Unix-domain socket, shared by libSSCardDriver.so and
 * libHeaSecReadInfo.so (docs/native.md, "Wire protocol").  Everything here has hidden visibility:
 * each library links its own copy and exports only its public functions.
 *
 * One call: connect (1 s at most), send one request line, read one answer
 *
 *     RC <TAB> LENGTH [<TAB> LENGTH]... <LF>, then the parts' bytes one after the other
 *
 * into the caller's buffers (bounded, text NUL-terminated), close.
 */
#ifndef SSCARD_CLIENT_H
#define SSCARD_CLIENT_H

#include <stddef.h>

#define SSCARD_EXPORT __attribute__((visibility("default")))

/* Return codes the client itself produces (docs/card-reference.md §6.4). */
#define CLIENT_E_READER (-11)
#define CLIENT_E_COMMAND (-12)
#define CLIENT_E_PARAM (-14)

/* The longest argument the service accepts, and the most a part may hold. */
#define CLIENT_MAX_ARG 4096
#define CLIENT_MAX_PART (1024 * 1024)

/* An integer from the environment within [low, high], else fallback. */
long client_env_long(const char* name, long fallback, long low, long high);

/* SSCARD_NATIVE_ENCODING=utf-8 (or utf8): 1; GBK (the default): 0. */
int client_utf8_mode(void);

/* Copy at most size-1 bytes of data and terminate; never past size.  size 0: nothing. */
void client_put(char* out, size_t size, const char* data, size_t length);

/* A library message in the caller's encoding followed by an ASCII detail into out (size bytes);
 * returns rc.  out NULL: only rc. */
long client_fail(long rc, char* out, size_t size, const char* utf8, const char* gbk, const char* detail);

#define CLIENT_FAIL(rc, out, size, id, detail) client_fail((rc), (out), (size), MSG_##id##_UTF8, MSG_##id##_GBK, (detail))

/* One output of a call. */
typedef struct {
    char* data;    /* where the part goes; NULL: read and dropped */
    size_t size;   /* capacity in bytes (text: NUL included) */
    int binary;    /* 0 text (cut to size-1, NUL-terminated); 1 bytes (longer than size: a bad answer) */
    size_t length; /* out: bytes stored */
} client_part;

typedef struct {
    const char* function;     /* the FUNCTION field */
    int nargs;
    const char* const* args;  /* escaped on the wire; each at most CLIENT_MAX_ARG bytes */
    size_t outsize;           /* the OUTSIZE field: the text parts' capacity */
    long pin_timeout_s;       /* the PIN_TIMEOUT_MS field, in seconds */
    long extra_wait_s;        /* how much longer than SSCARD_TIMEOUT the answer may take */
    client_part* parts;       /* parts[0] also gets the message of a failure (text) */
    int nparts;
} client_request;

/*
 * Send the request and read the answer into the parts.  Returns the answer's RC, or the client's
 * own −11 (no service, connection lost), −12 (timeout, malformed answer), −14 (arguments too
 * long) with its message in parts[0].  Serialized within the library by a mutex.
 */
long client_call(const client_request* request);

#endif /* SSCARD_CLIENT_H */
