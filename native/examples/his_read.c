/* A HIS front desk's first two calls through libHeaSecReadInfo.so (docs/native.md).
 * Build: cc his_read.c $(pkg-config --cflags --libs heasecreadinfo) -o his_read
 * Run:   ./his_read '{"IP": "…", "PORT": 0, …}'   (the Init JSON; docs/native.md lists the keys) */
#include <stdio.h>
#include <string.h>

#include <HeaSecReadInfo.h>

int main(int argc, char** argv) {
    char message[HEASEC_BUFFER_SIZE];
    if (argc < 2 || Init(argv[1], message) != HEASEC_OK) {
        fprintf(stderr, "Init: %s\n", argc < 2 ? "give the Init JSON" : message);
        return 1;
    }
    static char card[HEASEC_BUFFER_SIZE], business[HEASEC_BUSI_BUFFER_SIZE];
    long rc = ReadCardBas(card, business);
    if (rc != HEASEC_OK) {
        fprintf(stderr, "ReadCardBas: %ld %s\n", rc, card);
        return 1;
    }
    /* 区号|社会保障号码|卡号|卡识别码|姓名|卡复位信息|规范版本|发卡日期|卡有效期|终端机编号|终端设备号| */
    char* field = strtok(card, "|");
    field = field != NULL ? strtok(NULL, "|") : NULL;
    printf("%s\n", field != NULL ? field : ""); /* the second field: 社会保障号码 */
    return 0;
}
