#!/bin/sh
# The demo app: opens a new MariaDB connection every second with the credentials vault-env put in
# its environment, and prints OK or FAIL. It never sees a Vault token.
trap 'echo "app[$$]: stopping"; exit 0' TERM INT
echo "app[$$]: started as $DB_USER (VAULT_TOKEN ${VAULT_TOKEN:+is set}${VAULT_TOKEN:-is not set})"
while :; do
  if out=$(MYSQL_PWD="$DB_PASSWORD" mariadb --no-defaults -h127.0.0.1 -P"$DB_PORT" -u"$DB_USER" \
             -N -e 'SELECT CURRENT_USER()' 2>&1); then
    echo "$(date +%T) app[$$]: OK   $out"
  else
    echo "$(date +%T) app[$$]: FAIL $DB_USER: $out"
  fi
  sleep 1
done
