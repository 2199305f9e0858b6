/*
 * libHeaSecReadInfo.so: the medical insurance platform's reader library (医保 HeaSecReadInfo,
 * docs/card-reference.md §7) as a client of the sscard service.
 *
 * Init validates its JSON here, in the calling process (Jansson parses it), and keeps the settings
 * for the process behind a mutex; every other function refuses to run before a successful Init.
 * The card calls go to the service through the client libSSCardDriver.so uses too (client.c):
 * ReadCardBas, VerifyPIN and ChangePIN are the service's iReadCardBas / iVerifyPIN / iChangePIN;
 * ReadSFZ and GetPersonInfo are operations of their own whose answers have several parts
 * (docs/native.md, "Wire protocol").  ReadSFZ's photo is written here, by the calling process,
 * to the path it named (0600, no symlink followed).
 */
#define _GNU_SOURCE /* explicit_bzero, O_NOFOLLOW */
#include "HeaSecReadInfo.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "messages.h"

#define EXPORT SSCARD_EXPORT

#define MAX_BUFFER (1024 * 1024)
#define MAX_VALUE 1024            /* the longest string value Init accepts */
#define MAX_TIMEOUT_S 600.0       /* Init's TIMEOUT: more than 0, at most this */
#define MAX_PHOTO (64 * 1024)     /* a WLT photo is 1024 bytes */
#define PHOTO_NAME "photo.wlt"    /* the file written when pPath is a directory */
#define DEFAULT_PIN_TIMEOUT_S 60

static size_t buffer_size(void) {
    return (size_t)client_env_long("SSCARD_HEASEC_BUFFER_SIZE", HEASEC_BUFFER_SIZE, 2, MAX_BUFFER);
}

#define FAIL(rc, out, id, detail) CLIENT_FAIL((rc), (out), buffer_size(), id, (detail))

/* -- the settings of Init ---------------------------------------------------------------- */

/* The validated Init object without ACCESS_KEY and SECRETKEY; NULL before a successful Init. */
static json_t* settings = NULL;
static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;

enum kind { TEXT, NUMBER };

static const struct {
    const char* name;
    enum kind kind;
    int kept; /* stored for the process (the platform's gateway secrets are not: nothing signs here) */
} KEYS[] = {
    {"IP", TEXT, 1},         {"PORT", NUMBER, 1},       {"TIMEOUT", NUMBER, 1},   {"LOG_PATH", TEXT, 1},
    {"EC_URL", TEXT, 1},     {"CARD_PASSTYPE", TEXT, 1}, {"API_NAME", TEXT, 1},   {"API_VERSION", TEXT, 1},
    {"ACCESS_KEY", TEXT, 0}, {"SECRETKEY", TEXT, 0},    {"ORG_ID", TEXT, 1},      {"AREA_CODE", TEXT, 1},
};

/* What goes to the service with GetPersonInfo (docs/native.md). */
static const char* const FORWARDED[] = {"AREA_CODE", "CARD_PASSTYPE", "EC_URL", "ORG_ID", "TIMEOUT"};

/* Why a value is refused, or NULL. */
static const char* check_value(const char* name, json_t* value) {
    if (strcmp(name, "PORT") == 0) {
        double port = json_number_value(value);
        if (port < 0 || port > 65535 || (double)(long)port != port) {
            return "PORT (an integer 0 to 65535)";
        }
    } else if (strcmp(name, "TIMEOUT") == 0) {
        double timeout = json_number_value(value);
        if (!(timeout > 0 && timeout <= MAX_TIMEOUT_S)) {
            return "TIMEOUT (seconds, more than 0 and at most 600)";
        }
    } else if (strcmp(name, "CARD_PASSTYPE") == 0) {
        const char* text = json_string_value(value);
        if (strcmp(text, "1") != 0 && strcmp(text, "2") != 0) {
            return "CARD_PASSTYPE (\"1\" or \"2\")";
        }
    } else if (json_is_string(value) && json_string_length(value) > MAX_VALUE) {
        return "a string value (at most 1024 bytes)";
    }
    return NULL;
}

/* Parse and check pInitInfo; the object to keep, or NULL with the message in err. */
static json_t* validate(const char* text, char* err, long* rc) {
    json_error_t error;
    json_t* doc = json_loads(text, JSON_REJECT_DUPLICATES, &error);
    if (doc == NULL) {
        /* Jansson's text may quote the input near the error ("... near 'x'"), which could be a
         * secret: keep only its reason and the position. */
        char* near = strstr(error.text, " near ");
        if (near != NULL) {
            *near = '\0';
        }
        char detail[JSON_ERROR_TEXT_LENGTH + 64];
        snprintf(detail, sizeof detail, "%s (line %d, column %d)", error.text, error.line, error.column);
        *rc = FAIL(HEASEC_E_PARAM, err, INIT_JSON, detail);
        return NULL;
    }
    json_t* kept = NULL;
    if (!json_is_object(doc)) {
        *rc = FAIL(HEASEC_E_PARAM, err, INIT_JSON, "not an object");
        goto out;
    }
    kept = json_object();
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        json_t* value = json_object_get(doc, KEYS[i].name);
        char detail[96];
        if (value == NULL) {
            *rc = FAIL(HEASEC_E_PARAM, err, INIT_MISSING, KEYS[i].name);
            goto refused;
        }
        if (KEYS[i].kind == TEXT ? !json_is_string(value) : !json_is_number(value)) {
            snprintf(detail, sizeof detail, "%s (expected a %s)", KEYS[i].name,
                     KEYS[i].kind == TEXT ? "string" : "number");
            *rc = FAIL(HEASEC_E_PARAM, err, INIT_TYPE, detail);
            goto refused;
        }
        const char* why = check_value(KEYS[i].name, value);
        if (why != NULL) {
            *rc = FAIL(HEASEC_E_PARAM, err, INIT_VALUE, why);
            goto refused;
        }
        if (KEYS[i].kept) {
            json_object_set(kept, KEYS[i].name, value);
        }
    }
    json_t* ext = json_object_get(doc, "EXT"); /* optional, any JSON value; stored, not used */
    if (ext != NULL) {
        json_object_set_new(kept, "EXT", json_deep_copy(ext));
    }
    goto out;
refused:
    json_decref(kept);
    kept = NULL;
out:
    /* The gateway secrets are not kept: wipe Jansson's copies before they are freed. */
    if (json_is_object(doc)) {
        for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
            json_t* value = json_object_get(doc, KEYS[i].name);
            if (!KEYS[i].kept && json_is_string(value)) {
                explicit_bzero((char*)json_string_value(value), json_string_length(value));
            }
        }
    }
    json_decref(doc);
    return kept;
}

EXPORT long Init(char* pInitInfo, char* pErrMsg) {
    long rc = HEASEC_OK;
    json_t* fresh = NULL;
    if (pInitInfo == NULL) {
        rc = FAIL(HEASEC_E_PARAM, pErrMsg, INIT_JSON, "pInitInfo is NULL");
    } else {
        fresh = validate(pInitInfo, pErrMsg, &rc);
    }
    /* A failed Init leaves the library uninitialised: no call runs on settings the HIS did not mean. */
    pthread_mutex_lock(&settings_lock);
    json_t* old = settings;
    settings = fresh;
    pthread_mutex_unlock(&settings_lock);
    json_decref(old);
    if (fresh != NULL && pErrMsg != NULL) {
        pErrMsg[0] = '\0';
    }
    return rc;
}

/* The settings GetPersonInfo forwards (compact ASCII JSON, malloc'd), the TIMEOUT and whether the
 * card PIN is checked; NULL before Init. */
static char* forwarded(double* timeout, int* check_pin) {
    char* text = NULL;
    pthread_mutex_lock(&settings_lock);
    if (settings != NULL) {
        json_t* out = json_object();
        for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0]; i++) {
            json_object_set(out, FORWARDED[i], json_object_get(settings, FORWARDED[i]));
        }
        text = json_dumps(out, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_SORT_KEYS);
        json_decref(out);
        *timeout = json_number_value(json_object_get(settings, "TIMEOUT"));
        *check_pin = strcmp(json_string_value(json_object_get(settings, "CARD_PASSTYPE")), "1") == 0;
    }
    pthread_mutex_unlock(&settings_lock);
    return text;
}

/* Unloading the library (dlclose) frees what Init kept. */
__attribute__((destructor)) static void forget_settings(void) {
    pthread_mutex_lock(&settings_lock);
    json_t* old = settings;
    settings = NULL;
    pthread_mutex_unlock(&settings_lock);
    json_decref(old);
}

static int initialised(void) {
    pthread_mutex_lock(&settings_lock);
    int ready = settings != NULL;
    pthread_mutex_unlock(&settings_lock);
    return ready;
}

/* -- calls ------------------------------------------------------------------------------- */

static long pin_timeout(void) { return client_env_long("SSCARD_PIN_TIMEOUT", DEFAULT_PIN_TIMEOUT_S, 1, 3600); }

static long simple_call(const char* function, const char* arg, char* out, int pin) {
    const char* args[] = {arg};
    client_part part = {.data = out, .size = buffer_size(), .binary = 0, .length = 0};
    client_request request = {
        .function = function,
        .nargs = 1,
        .args = args,
        .outsize = part.size,
        .pin_timeout_s = pin_timeout(),
        .extra_wait_s = pin ? pin_timeout() : 0,
        .parts = &part,
        .nparts = 1,
    };
    return client_call(&request);
}

/* The common start of every card call: a buffer to answer in, then Init done. */
#define REQUIRE(out)                                                                                                   \
    do {                                                                                                               \
        if ((out) == NULL) {                                                                                           \
            return HEASEC_E_PARAM;                                                                                     \
        }                                                                                                              \
        if (!initialised()) {                                                                                          \
            return FAIL(HEASEC_E_NOT_INITIALISED, (out), NOT_INITIALISED, NULL);                                       \
        }                                                                                                              \
    } while (0)

EXPORT long ReadCardBas(char* pCardInfo, char* pBusiCardInfo) {
    if (pBusiCardInfo != NULL) {
        pBusiCardInfo[0] = '\0'; /* the platform's business string needs its keys: never made here */
    }
    REQUIRE(pCardInfo);
    return simple_call("iReadCardBas", "3", pCardInfo, 0);
}

EXPORT long VerifyPIN(char* pOutBuff) {
    REQUIRE(pOutBuff);
    return simple_call("iVerifyPIN", "3", pOutBuff, 1);
}

EXPORT long ChangePIN(char* pOutBuff) {
    REQUIRE(pOutBuff);
    return simple_call("iChangePIN", "3", pOutBuff, 1);
}

/* -- ReadSFZ and its photo file ---------------------------------------------------------- */

/* Where the photo goes: pPath, or DIR/photo.wlt when pPath is a directory.  0, or an errno. */
static int photo_target(const char* path, char* target, size_t size) {
    struct stat info;
    int n;
    if (stat(path, &info) == 0 && S_ISDIR(info.st_mode)) {
        n = snprintf(target, size, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/", PHOTO_NAME);
    } else {
        n = snprintf(target, size, "%s", path);
    }
    if (n < 0 || (size_t)n >= size) {
        return ENAMETOOLONG;
    }
    /* As sscard.files: an existing file must be a regular file (never a symlink, FIFO, device). */
    if (lstat(target, &info) == 0) {
        return S_ISREG(info.st_mode) ? 0 : (S_ISLNK(info.st_mode) ? ELOOP : EINVAL);
    }
    if (errno != ENOENT) {
        return errno;
    }
    /* A new file: its directory must exist and take it (the open checks again). */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", target);
    char* slash = strrchr(parent, '/');
    if (slash == NULL) {
        snprintf(parent, sizeof parent, ".");
    } else if (slash == parent) {
        parent[1] = '\0';
    } else {
        *slash = '\0';
    }
    if (stat(parent, &info) != 0) {
        return errno;
    }
    if (!S_ISDIR(info.st_mode)) {
        return ENOTDIR;
    }
    return access(parent, W_OK | X_OK) == 0 ? 0 : errno;
}

/* Write the photo to a new file created 0600 (an old regular file is replaced); 0 or an errno. */
static int write_private(const char* target, const char* data, size_t length) {
    struct stat info;
    if (lstat(target, &info) == 0) {
        if (!S_ISREG(info.st_mode)) {
            return S_ISLNK(info.st_mode) ? ELOOP : EINVAL;
        }
        if (unlink(target) != 0) {
            return errno;
        }
    }
    int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        return errno;
    }
    while (length > 0) {
        ssize_t n = write(fd, data, length);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            unlink(target);
            return e;
        }
        data += n;
        length -= (size_t)n;
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(target);
        return e;
    }
    return 0;
}

static long photo_failed(char* out, const char* target, int e) {
    char detail[PATH_MAX + 128];
    snprintf(detail, sizeof detail, "%s (%s)", target, strerror(e));
    return FAIL(HEASEC_E_PARAM, out, PHOTO_FILE, detail);
}

EXPORT long ReadSFZ(char* pPath, char* pOutBuff, char* pOutBusiBuff) {
    if (pOutBusiBuff != NULL) {
        pOutBusiBuff[0] = '\0';
    }
    REQUIRE(pOutBuff);
    int want_photo = pPath != NULL && pPath[0] != '\0';
    char target[PATH_MAX];
    if (want_photo) {
        int e = photo_target(pPath, target, sizeof target);
        if (e != 0) { /* refused before the card is read */
            return photo_failed(pOutBuff, pPath, e);
        }
    }
    char* photo = want_photo ? malloc(MAX_PHOTO) : NULL;
    if (want_photo && photo == NULL) {
        return photo_failed(pOutBuff, target, ENOMEM);
    }
    const char* args[] = {want_photo ? "1" : "0"};
    client_part parts[3] = {
        {.data = pOutBuff, .size = buffer_size(), .binary = 0, .length = 0},
        {.data = NULL, .size = 0, .binary = 0, .length = 0}, /* pOutBusiBuff: "" (docs/native.md) */
        {.data = photo, .size = want_photo ? MAX_PHOTO : 0, .binary = 1, .length = 0},
    };
    client_request request = {
        .function = "ReadSFZ",
        .nargs = 1,
        .args = args,
        .outsize = parts[0].size,
        .pin_timeout_s = pin_timeout(),
        .extra_wait_s = 0,
        .parts = parts,
        .nparts = 3,
    };
    long rc = client_call(&request);
    if (rc == HEASEC_OK && want_photo) {
        int e = write_private(target, photo, parts[2].length);
        if (e != 0) {
            rc = photo_failed(pOutBuff, target, e);
        }
    }
    if (photo != NULL) {
        explicit_bzero(photo, MAX_PHOTO); /* a resident's photo */
        free(photo);
    }
    return rc;
}

/* -- GetPersonInfo ----------------------------------------------------------------------- */

EXPORT long GetPersonInfo(char* pInData, char* pOutData) {
    REQUIRE(pOutData);
    if (pInData != NULL && pInData[0] != '\0') {
        json_error_t error;
        json_t* in = json_loads(pInData, 0, &error);
        int is_object = json_is_object(in);
        json_decref(in);
        if (!is_object) {
            return FAIL(HEASEC_E_PARAM, pOutData, IN_DATA, in == NULL ? "not JSON" : "not an object");
        }
    }
    double timeout = 0;
    int check_pin = 0;
    char* settings_json = forwarded(&timeout, &check_pin);
    if (settings_json == NULL) { /* a concurrent failed Init */
        return FAIL(HEASEC_E_NOT_INITIALISED, pOutData, NOT_INITIALISED, NULL);
    }
    long wait_s = (long)timeout + ((double)(long)timeout < timeout ? 1 : 0); /* whole seconds, rounded up */
    const char* args[] = {settings_json};
    client_part part = {.data = pOutData, .size = buffer_size(), .binary = 0, .length = 0};
    client_request request = {
        .function = "GetPersonInfo",
        .nargs = 1,
        .args = args,
        .outsize = part.size,
        .pin_timeout_s = pin_timeout(),
        /* the wait for a credential, then the platform's answer (each TIMEOUT), then the PIN */
        .extra_wait_s = 2 * wait_s + (check_pin ? pin_timeout() : 0),
        .parts = &part,
        .nparts = 1,
    };
    long rc = client_call(&request);
    free(settings_json);
    return rc;
}
