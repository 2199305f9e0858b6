/*
 * SSCardDriver.h - the national social security card reader interface (人社部 读写卡通用接口,
 * LD/T 6001.5-2023 part 5) as a Linux shared library, libSSCardDriver.so, built by sscard.
 *
 * The library is a thin client of the sscard service (`sscard serve --socket PATH`): each call
 * sends one request over a Unix-domain socket ($SSCARD_SOCKET, default /run/sscard/sscard.sock)
 * and copies the answer into pOutInfo.  No Python runs inside the calling program.
 *
 * Every function returns 0 on success or a negative national return code (below); pOutInfo gets
 * the result line on success and a message on failure.  The caller allocates pOutInfo: at most
 * SSCARD_OUTINFO_SIZE bytes (1024 unless the environment variable SSCARD_OUTINFO_SIZE says
 * otherwise) are written, always NUL-terminated.  Text is GBK (GB18030 for characters GBK lacks)
 * unless SSCARD_NATIVE_ENCODING=utf-8.  See docs/native.md.
 */
#ifndef SSCARD_DRIVER_H
#define SSCARD_DRIVER_H

#ifdef __cplusplus
extern "C" {
#endif

/* Default size of pOutInfo the library assumes (bytes, NUL included). */
#define SSCARD_OUTINFO_SIZE 1024

/* iType (docs/card-reference.md §6.1). */
#define SSCARD_ITYPE_CONTACT 1
#define SSCARD_ITYPE_CONTACTLESS 2
#define SSCARD_ITYPE_AUTO_CONTACT_FIRST 3
#define SSCARD_ITYPE_AUTO_CONTACTLESS_FIRST 4

/* Return codes (docs/card-reference.md §6.4). Any other card error is -(SW as a decimal number). */
#define SSCARD_OK 0
#define SSCARD_E_CARD_TYPE (-1)        /* not a social security card */
#define SSCARD_E_NO_CARD (-2)          /* no card in the reader */
#define SSCARD_E_NOT_POWERED (-3)      /* card not powered */
#define SSCARD_E_MUTE (-4)             /* card does not answer */
#define SSCARD_E_READER (-11)          /* reader (here: the sscard service) connection */
#define SSCARD_E_COMMAND (-12)         /* reader command error / timeout */
#define SSCARD_E_NOT_SUPPORTED (-13)   /* function not supported by this library (sscard's choice) */
#define SSCARD_E_PARAM (-14)           /* parameter error (参数错误) */
#define SSCARD_E_CHECKSUM (-15)
#define SSCARD_E_CARD_CHANGED (-20)
#define SSCARD_E_NOT_GENUINE (-21)
#define SSCARD_E_AUTH_FAILED (-22)
#define SSCARD_E_BAD_DATA (-23)
#define SSCARD_E_PSAM_KEY (-24)
#define SSCARD_E_HSM (-25)
#define SSCARD_E_PIN_CANCELLED (-31)
#define SSCARD_E_PIN_TIMEOUT (-32)
#define SSCARD_E_PIN_FORMAT (-33)
#define SSCARD_E_PIN_MISMATCH (-34)
#define SSCARD_E_PIN_INCORRECT (-51)   /* pOutInfo: a message whose only number is the tries left */
#define SSCARD_E_PIN_BLOCKED (-52)
#define SSCARD_E_NO_PSAM (-2201)
#define SSCARD_E_ALGORITHM (-2202)
#define SSCARD_E_AUTH_REQUIRED (-2203)

/* Supported through the sscard service. */
long iReadCardBas(int iType, char* pOutInfo);
long iReadCardBas_HSM_Step1(int iType, char* pOutInfo);
long iReadCardBas_HSM_Step2(char* pKey, char* pOutInfo);
long iVerifyPIN(int iType, char* pOutInfo);
long iChangePIN(int iType, char* pOutInfo);

/* Present for binary compatibility; return SSCARD_E_NOT_SUPPORTED with a message. */
long iReadCard(int iType, int iAuthType, char* pCardInfo, char* pFileAddr, char* pOutInfo);
long iWriteCard(int iType, char* pCardInfo, char* pFileAddr, char* pWriteData, char* pOutInfo);
long iReloadPIN(int iType, char* pCardInfo, char* pOutInfo);
long iUnblockPIN(int iType, char* pCardInfo, char* pOutInfo);
long iDoDebit(int iType, char* pCardInfo, char* pPayInfo, char* pOutInfo);
long iReadDebitRecord(int iType, char* pOutInfo);
long PKI_SignData(char* pUserPin, char* pInData, int iType, char* pOutInfo);
/* The signatures below are not in the reference's table (docs/native.md: "unconfirmed"). */
long PKI_VerifySign(char* pInData, char* pSignData, int iType, char* pOutInfo);
long iReadIdentityCard(int iType, char* pOutInfo);
long iGetDeviceInfo(char* pOutInfo);

#ifdef __cplusplus
}
#endif

#endif /* SSCARD_DRIVER_H */
