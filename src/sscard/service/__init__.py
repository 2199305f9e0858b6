"""The local kiosk service (``sscard serve``): HTTP + WebSocket for kiosk pages (docs/service.md)."""
