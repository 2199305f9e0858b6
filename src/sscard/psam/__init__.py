"""Terminal-side card authentication (docs/card-reference.md §5, docs/card-auth.md): PSAM, HSM and software keys."""
