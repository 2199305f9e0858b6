"""The library's own messages (source of native/src/messages.h): run `python3 native/messages.py`."""

MESSAGES = {'NO_SERVICE': '无法连接读卡服务（sscard），请确认服务已启动 / cannot connect to the card service (sscard serve): ', 'LOST': '读卡服务中途断开 / the card service closed the connection mid-call', 'TIMEOUT': '等待读卡服务应答超时 / timed out waiting for the card service', 'BAD_ANSWER': '读卡服务应答格式错误 / the card service sent a malformed answer', 'BAD_PARAM': '参数错误 / invalid parameter: ', 'NOT_SUPPORTED': '本库不支持此功能 / this function is not supported by libSSCardDriver: '}
