/*
 * Test driver: dlopen the real libSSCardDriver.so and call one national function by name.
 *
 *   driver LIB FUNCTION [ARG] [COUNT]
 *
 * ARG is iType (or pKey for iReadCardBas_HSM_Step2).  For each of COUNT calls (default 1) it
 * writes "RC<TAB>LENGTH<LF>" and the LENGTH bytes of pOutInfo, then checks that the byte after
 * the NUL (a canary) was not touched.  "NULL" as FUNCTION's suffix (e.g. iReadCardBas:NULL)
 * passes a NULL pOutInfo.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "SSCardDriver.h"

typedef long (*itype_fn)(int, char*);
typedef long (*key_fn)(char*, char*);
typedef long (*out_fn)(char*);
typedef long (*card_fn)(int, char*, char*);

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: driver LIB FUNCTION [ARG] [COUNT]\n");
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    char name[128];
    snprintf(name, sizeof name, "%s", argv[2]);
    int null_out = 0;
    char* colon = strchr(name, ':');
    if (colon != NULL) {
        *colon = '\0';
        null_out = strcmp(colon + 1, "NULL") == 0;
    }
    void* sym = dlsym(lib, name);
    if (sym == NULL) {
        fprintf(stderr, "dlsym %s: %s\n", name, dlerror());
        return 2;
    }
    const char* arg = argc > 3 ? argv[3] : "3";
    int count = argc > 4 ? atoi(argv[4]) : 1;
    size_t size = SSCARD_OUTINFO_SIZE;
    const char* env = getenv("SSCARD_OUTINFO_SIZE");
    if (env != NULL && atoi(env) > 0) {
        size = (size_t)atoi(env);
    }
    char* buf = malloc(size + 16);
    for (int i = 0; i < count; i++) {
        memset(buf, 'Z', size + 16);
        char* out = null_out ? NULL : buf;
        long rc;
        if (strcmp(name, "iReadCardBas_HSM_Step2") == 0) {
            rc = ((key_fn)sym)(strcmp(arg, "NULL") == 0 ? NULL : (char*)arg, out);
        } else if (strcmp(name, "iGetDeviceInfo") == 0) {
            rc = ((out_fn)sym)(out);
        } else if (strcmp(name, "iReloadPIN") == 0 || strcmp(name, "iUnblockPIN") == 0) {
            rc = ((card_fn)sym)(atoi(arg), (char*)"", out);
        } else if (strcmp(name, "iReadCard") == 0) {
            rc = ((long (*)(int, int, char*, char*, char*))sym)(atoi(arg), 0, (char*)"", (char*)"", out);
        } else if (strcmp(name, "iWriteCard") == 0) {
            rc = ((long (*)(int, char*, char*, char*, char*))sym)(atoi(arg), (char*)"", (char*)"", (char*)"", out);
        } else if (strcmp(name, "iDoDebit") == 0) {
            rc = ((long (*)(int, char*, char*, char*))sym)(atoi(arg), (char*)"", (char*)"", out);
        } else if (strcmp(name, "PKI_SignData") == 0) {
            rc = ((long (*)(char*, char*, int, char*))sym)((char*)"", (char*)"", atoi(arg), out);
        } else if (strcmp(name, "PKI_VerifySign") == 0) {
            rc = ((long (*)(char*, char*, int, char*))sym)((char*)"", (char*)"", atoi(arg), out);
        } else {
            rc = ((itype_fn)sym)(atoi(arg), out);
        }
        size_t length = null_out ? 0 : strnlen(buf, size);
        if (!null_out && length >= size) {
            fprintf(stderr, "pOutInfo not NUL-terminated within %zu bytes\n", size);
            return 3;
        }
        for (size_t j = size; j < size + 16; j++) {
            if (buf[j] != 'Z') {
                fprintf(stderr, "wrote past pOutInfo\n");
                return 3;
            }
        }
        printf("%ld\t%zu\n", rc, length);
        fwrite(buf, 1, length, stdout);
        fflush(stdout);
    }
    free(buf);
    dlclose(lib);
    return 0;
}
