# What the app's Vault role may do: read dynamic MariaDB credentials, nothing else.
path "database/creds/app" {
  capabilities = ["read"]
}
