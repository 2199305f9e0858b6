"""The card applications as the facade sees them: one adapter per registry row (:mod:`sscard.cardapp`).

Each module wraps one application package (``sscard.ssc``, ``sscard.health``, ``sscard.bank``)
in the :class:`~sscard.cardapp.CardApplication` protocol.  This package imports none of them:
a row's module is imported when a card gets that far, never before.
"""
