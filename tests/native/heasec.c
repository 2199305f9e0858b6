/*
 * Test driver: dlopen the real libHeaSecReadInfo.so and make a sequence of calls in one process
 * (Init's settings are the process's, so a test needs them all in one run).
 *
 *   heasec LIB CALL [ARG] [CALL [ARG]]...
 *
 * CALL is Init JSON | ReadCardBas | VerifyPIN | ChangePIN | ReadSFZ PATH | GetPersonInfo JSON |
 * Threads N (N threads, each Init with the last Init's JSON then ReadCardBas 5 times).  ARG
 * "NULL" passes a NULL pointer; a ":NULL" suffix on CALL passes NULL output buffers.  For each
 * call it writes "RC<TAB>LEN1<TAB>LEN2<LF>" and the bytes of the two output buffers (the second:
 * pBusiCardInfo / pOutBusiBuff, else empty), after checking that nothing was written past either
 * buffer (canaries) and that each is NUL-terminated.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "HeaSecReadInfo.h"

#define CANARY 16

typedef long (*two_fn)(char*, char*);
typedef long (*one_fn)(char*);
typedef long (*three_fn)(char*, char*, char*);

static void* lib;
static size_t size = HEASEC_BUFFER_SIZE;
static const char* last_init = "{}";

static void* sym(const char* name) {
    void* s = dlsym(lib, name);
    if (s == NULL) {
        fprintf(stderr, "dlsym %s: %s\n", name, dlerror());
        exit(2);
    }
    return s;
}

static int check(const char* buf, size_t cap, const char* what) {
    if (strnlen(buf, cap) >= cap) {
        fprintf(stderr, "%s not NUL-terminated within %zu bytes\n", what, cap);
        return 0;
    }
    for (size_t j = cap; j < cap + CANARY; j++) {
        if (buf[j] != 'Z') {
            fprintf(stderr, "wrote past %s\n", what);
            return 0;
        }
    }
    return 1;
}

static void* worker(void* arg) {
    long* ok = arg;
    char* out = malloc(size);
    char* busi = malloc(HEASEC_BUSI_BUFFER_SIZE);
    char err[HEASEC_BUFFER_SIZE];
    for (int i = 0; i < 5; i++) {
        if (((two_fn)sym("Init"))((char*)last_init, err) == 0 && ((two_fn)sym("ReadCardBas"))(out, busi) == 0) {
            (*ok)++;
        }
    }
    free(out);
    free(busi);
    return NULL;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: heasec LIB CALL [ARG]...\n");
        return 2;
    }
    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    const char* env = getenv("SSCARD_HEASEC_BUFFER_SIZE");
    if (env != NULL && atoi(env) > 0) {
        size = (size_t)atoi(env);
    }
    char* one = malloc(size + CANARY);
    char* two = malloc(HEASEC_BUSI_BUFFER_SIZE + CANARY);
    for (int i = 2; i < argc; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s", argv[i]);
        int null_out = 0;
        char* colon = strchr(name, ':');
        if (colon != NULL) {
            *colon = '\0';
            null_out = strcmp(colon + 1, "NULL") == 0;
        }
        int takes_arg = strcmp(name, "Init") == 0 || strcmp(name, "ReadSFZ") == 0 ||
                        strcmp(name, "GetPersonInfo") == 0 || strcmp(name, "Threads") == 0;
        char* arg = NULL;
        if (takes_arg) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s needs an argument\n", name);
                return 2;
            }
            arg = strcmp(argv[i + 1], "NULL") == 0 ? NULL : argv[i + 1];
            i++;
        }
        memset(one, 'Z', size + CANARY);
        memset(two, 'Z', HEASEC_BUSI_BUFFER_SIZE + CANARY);
        memset(two, 'Y', HEASEC_BUSI_BUFFER_SIZE - 1); /* "" must be written over this */
        two[HEASEC_BUSI_BUFFER_SIZE - 1] = '\0';
        char* a = null_out ? NULL : one;
        char* b = null_out ? NULL : two;
        int has_two = 0;
        long rc;
        if (strcmp(name, "Init") == 0) {
            if (arg != NULL) {
                last_init = arg;
            }
            rc = ((two_fn)sym("Init"))(arg, a);
        } else if (strcmp(name, "ReadCardBas") == 0) {
            rc = ((two_fn)sym("ReadCardBas"))(a, b);
            has_two = 1;
        } else if (strcmp(name, "VerifyPIN") == 0 || strcmp(name, "ChangePIN") == 0) {
            rc = ((one_fn)sym(name))(a);
        } else if (strcmp(name, "ReadSFZ") == 0) {
            rc = ((three_fn)sym("ReadSFZ"))(arg, a, b);
            has_two = 1;
        } else if (strcmp(name, "GetPersonInfo") == 0) {
            rc = ((two_fn)sym("GetPersonInfo"))(arg, a);
        } else if (strcmp(name, "Threads") == 0) {
            int n = atoi(arg != NULL ? arg : "4");
            pthread_t threads[16];
            long ok[16] = {0};
            n = n < 1 ? 1 : (n > 16 ? 16 : n);
            for (int t = 0; t < n; t++) {
                pthread_create(&threads[t], NULL, worker, &ok[t]);
            }
            long total = 0;
            for (int t = 0; t < n; t++) {
                pthread_join(threads[t], NULL);
                total += ok[t];
            }
            printf("%ld\t0\t0\n", total);
            continue;
        } else {
            fprintf(stderr, "unknown call %s\n", name);
            return 2;
        }
        size_t l1 = 0, l2 = 0;
        if (!null_out) {
            if (!check(one, size, "the first buffer")) {
                return 3;
            }
            l1 = strlen(one);
            if (has_two) {
                if (!check(two, HEASEC_BUSI_BUFFER_SIZE, "the business buffer")) {
                    return 3;
                }
                l2 = strlen(two);
            }
        }
        printf("%ld\t%zu\t%zu\n", rc, l1, l2);
        fwrite(one, 1, l1, stdout);
        fwrite(two, 1, l2, stdout);
        fflush(stdout);
    }
    free(one);
    free(two);
    dlclose(lib);
    return 0;
}
