/* Read the social security card's basic data through libSSCardDriver.so (docs/native.md).
 * Build: cc read_card.c $(pkg-config --cflags --libs sscarddriver) -o read_card */
#include <stdio.h>
#include <string.h>

#include <SSCardDriver.h>

int main(void) {
    char info[SSCARD_OUTINFO_SIZE];
    long rc = iReadCardBas(SSCARD_ITYPE_AUTO_CONTACT_FIRST, info);
    if (rc != SSCARD_OK) {
        fprintf(stderr, "iReadCardBas: %ld %s\n", rc, info);
        return 1;
    }
    /* 区号|社会保障号码|卡号|卡识别码|姓名|卡复位信息|规范版本|发卡日期|卡有效期|终端机编号|终端设备号| */
    char* field = strtok(info, "|");
    for (int i = 0; field != NULL && i < 2; i++) {
        field = strtok(NULL, "|");
    }
    printf("%s\n", field != NULL ? field : ""); /* the third field: 卡号 */
    return 0;
}
