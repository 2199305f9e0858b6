/*
 * libSSCardDriver.so: the national reader interface as a client of the sscard service.
 *
 * Each call: check the arguments, then one request on the service's socket through the client
 * both libraries share (client.c: connect in 1 s at most, one request line, one answer
 * RC<TAB>LENGTH<LF> + LENGTH bytes copied into pOutInfo, bounded and NUL-terminated, close).
 * docs/native.md, "Wire protocol".
 */
#include "SSCardDriver.h"

#include <stdio.h>
#include <string.h>

#include "client.h"
#include "messages.h"

#define EXPORT SSCARD_EXPORT

#define DEFAULT_PIN_TIMEOUT_S 60
#define MAX_OUTINFO (1024 * 1024)

static size_t out_size(void) {
    return (size_t)client_env_long("SSCARD_OUTINFO_SIZE", SSCARD_OUTINFO_SIZE, 2, MAX_OUTINFO);
}

#define FAIL(rc, out, id, detail) CLIENT_FAIL((rc), (out), out_size(), id, (detail))

/*
 * Send FUNCTION with its arguments and put the answer into out.  pin: the call may wait for a
 * PIN, so the answer may take the PIN timeout longer.
 */
static long call(const char* function, int nargs, const char* const* args, char* out, int pin) {
    long pin_s = client_env_long("SSCARD_PIN_TIMEOUT", DEFAULT_PIN_TIMEOUT_S, 1, 3600);
    client_part part = {.data = out, .size = out_size(), .binary = 0, .length = 0};
    client_request request = {
        .function = function,
        .nargs = nargs,
        .args = args,
        .outsize = part.size,
        .pin_timeout_s = pin_s,
        .extra_wait_s = pin ? pin_s : 0,
        .parts = &part,
        .nparts = 1,
    };
    return client_call(&request);
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
