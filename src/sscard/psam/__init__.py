"""Terminal-side card authentication (reference §5, docs/card-auth.md): PSAM, HSM and software keys."""
