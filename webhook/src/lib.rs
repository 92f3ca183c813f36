//! vault-secrets-webhook (not built yet: see the webhook issues).
