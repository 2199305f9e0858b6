"""sscard: smart-card reader middleware for China's social security card (社会保障卡).

Import the terminal facade from :mod:`sscard.terminal`; heavy modules (pyscard, construct) are
loaded lazily so that ``import sscard`` stays cheap for the CLI's start-up time.
"""

__version__ = "0.1.0"
