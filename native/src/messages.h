/* Generated from the table in native/messages.py; tests/test_native.py checks that the GBK
 * bytes are the UTF-8 text re-encoded.  Do not edit by hand. */
#ifndef SSCARD_MESSAGES_H
#define SSCARD_MESSAGES_H

#define MSG_NO_SERVICE_UTF8 "\346\227\240\346\263\225\350\277\236\346\216\245\350\257\273\345\215\241\346\234\215\345\212\241\357\274\210sscard\357\274\211\357\274\214\350\257\267\347\241\256\350\256\244\346\234\215\345\212\241\345\267\262\345\220\257\345\212\250 / cannot connect to the card service (sscard serve): "
#define MSG_NO_SERVICE_GBK "\316\336\267\250\301\254\275\323\266\301\277\250\267\376\316\361\243\250sscard\243\251\243\254\307\353\310\267\310\317\267\376\316\361\322\321\306\364\266\257 / cannot connect to the card service (sscard serve): "
#define MSG_LOST_UTF8 "\350\257\273\345\215\241\346\234\215\345\212\241\344\270\255\351\200\224\346\226\255\345\274\200 / the card service closed the connection mid-call"
#define MSG_LOST_GBK "\266\301\277\250\267\376\316\361\326\320\315\276\266\317\277\252 / the card service closed the connection mid-call"
#define MSG_TIMEOUT_UTF8 "\347\255\211\345\276\205\350\257\273\345\215\241\346\234\215\345\212\241\345\272\224\347\255\224\350\266\205\346\227\266 / timed out waiting for the card service"
#define MSG_TIMEOUT_GBK "\265\310\264\375\266\301\277\250\267\376\316\361\323\246\264\360\263\254\312\261 / timed out waiting for the card service"
#define MSG_BAD_ANSWER_UTF8 "\350\257\273\345\215\241\346\234\215\345\212\241\345\272\224\347\255\224\346\240\274\345\274\217\351\224\231\350\257\257 / the card service sent a malformed answer"
#define MSG_BAD_ANSWER_GBK "\266\301\277\250\267\376\316\361\323\246\264\360\270\361\312\275\264\355\316\363 / the card service sent a malformed answer"
#define MSG_BAD_PARAM_UTF8 "\345\217\202\346\225\260\351\224\231\350\257\257 / invalid parameter: "
#define MSG_BAD_PARAM_GBK "\262\316\312\375\264\355\316\363 / invalid parameter: "
#define MSG_NOT_SUPPORTED_UTF8 "\346\234\254\345\272\223\344\270\215\346\224\257\346\214\201\346\255\244\345\212\237\350\203\275 / this function is not supported by libSSCardDriver: "
#define MSG_NOT_SUPPORTED_GBK "\261\276\277\342\262\273\326\247\263\326\264\313\271\246\304\334 / this function is not supported by libSSCardDriver: "

#endif
