"""``python -m sscard.native_socket``: the socket server alone, for tests and trying it out."""

from sscard.native_socket.server import main

raise SystemExit(main())
