/*
 * HeaSecReadInfo.h - the national medical insurance platform's credential reader library
 * (医保 HeaSecReadInfo, docs/card-reference.md §7) as a Linux shared library,
 * libHeaSecReadInfo.so, built by sscard.
 *
 * Like libSSCardDriver.so it is a thin client of the sscard service (`sscard serve --socket
 * PATH`): each card call is one request on a Unix-domain socket ($SSCARD_SOCKET, default
 * /run/sscard/sscard.sock).  No Python runs inside the calling program.
 *
 * Init must come first (every other function returns HEASEC_E_NOT_INITIALISED until it
 * succeeds).  Every function returns 0 on success or a negative code (the national interface's,
 * docs/card-reference.md §6.4); on failure the first output buffer holds a message.
 *
 * Buffers are the caller's.  The library writes at most HEASEC_BUFFER_SIZE bytes (2048, or
 * $SSCARD_HEASEC_BUFFER_SIZE) into pErrMsg, pCardInfo, pOutBuff, pOutData, always
 * NUL-terminated; into pBusiCardInfo and pOutBusiBuff only an empty string (one byte: sscard
 * cannot make the platform's business string, docs/native.md).  Text is GBK (GB18030 for
 * characters GBK lacks) unless SSCARD_NATIVE_ENCODING=utf-8.  See docs/native.md.
 */
#ifndef HEASEC_READ_INFO_H
#define HEASEC_READ_INFO_H

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes the library may write to each text buffer by default (NUL included). */
#define HEASEC_BUFFER_SIZE 2048
/* What the platform's documentation tells callers to allocate for the business buffers. */
#define HEASEC_BUSI_BUFFER_SIZE 8192

/* Return codes (docs/card-reference.md §6.4; docs/native.md lists when each comes). */
#define HEASEC_OK 0
#define HEASEC_E_CARD_TYPE (-1)       /* not a social security card */
#define HEASEC_E_NO_CARD (-2)         /* no card (SSC or ID card) on the reader */
#define HEASEC_E_READER (-11)         /* the sscard service (or a reader behind it) cannot be reached */
#define HEASEC_E_COMMAND (-12)        /* no answer in time, a reader command failed */
#define HEASEC_E_NOT_SUPPORTED (-13)  /* not available here (e.g. no ID-card reader configured) */
#define HEASEC_E_PARAM (-14)          /* bad Init JSON, a NULL buffer, a result that does not fit */
#define HEASEC_E_NOT_INITIALISED (-14) /* called before a successful Init (the message says so) */
#define HEASEC_E_CARD_CHANGED (-20)
#define HEASEC_E_PIN_CANCELLED (-31)
#define HEASEC_E_PIN_TIMEOUT (-32)
#define HEASEC_E_PIN_FORMAT (-33)
#define HEASEC_E_PIN_MISMATCH (-34)
#define HEASEC_E_PIN_INCORRECT (-51)  /* the message's only number: the tries left */
#define HEASEC_E_PIN_BLOCKED (-52)

/* pInitInfo: JSON (UTF-8) with IP, PORT, TIMEOUT, LOG_PATH, EC_URL, CARD_PASSTYPE, API_NAME,
 * API_VERSION, ACCESS_KEY, SECRETKEY, ORG_ID, AREA_CODE; EXT optional. */
long Init(char* pInitInfo, char* pErrMsg);
/* pCardInfo: the 11-field iReadCardBas line; pBusiCardInfo: "" (no platform keys here). */
long ReadCardBas(char* pCardInfo, char* pBusiCardInfo);
/* The resident types the PIN on the PIN device of the service (page or PIN pad). */
long VerifyPIN(char* pOutBuff);
long ChangePIN(char* pOutBuff);
/* pPath: where the WLT photo goes (NULL or "": no photo; a directory: DIR/photo.wlt);
 * pOutBuff: 姓名|性别|民族|出生日期|住址|公民身份号码|签发日期|有效期至|签发机关|;
 * pOutBusiBuff: "". */
long ReadSFZ(char* pPath, char* pOutBuff, char* pOutBusiBuff);
/* pInData: NULL, "" or a JSON object (its keys are not used); pOutData: a JSON object of string
 * fields: mdtrt_cert_type, mdtrt_cert_no, card_sn, psn_cert_type, certno, psn_name, ... */
long GetPersonInfo(char* pInData, char* pOutData);

#ifdef __cplusplus
}
#endif

#endif /* HEASEC_READ_INFO_H */
