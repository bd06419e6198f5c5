#!/usr/bin/env bash
# Shows what a floatd TLS listener (HTTPS or tls://) accepts: each protocol version and a few
# suites that must be refused, with openssl s_client; then sslscan's full report when installed.
# Usage: scripts/tls-scan.sh HOST:PORT [CA-FILE [CLIENT-CERT CLIENT-KEY]]
# (a listener with tls.clientCertificates "require" refuses every probe made without a client certificate)
set -uo pipefail
target=${1:?usage: scripts/tls-scan.sh HOST:PORT [CA-FILE [CLIENT-CERT CLIENT-KEY]]}
ca=${2:-}
cert=${3:-}
key=${4:-}
command -v openssl >/dev/null || { echo "openssl is not installed (apt-get install -y openssl)"; exit 2; }
probe() {
  local what=$1; shift
  if echo | timeout 10 openssl s_client -connect "$target" ${ca:+-CAfile "$ca"} ${cert:+-cert "$cert"} ${key:+-key "$key"} "$@" >/dev/null 2>&1; then
    echo "accepted  $what"
  else
    echo "refused   $what"
  fi
}
probe "TLS 1.3" -tls1_3
probe "TLS 1.2, ECDHE + AES-GCM" -tls1_2 -cipher 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256'
probe "TLS 1.1" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'
probe "TLS 1.0" -tls1 -cipher 'DEFAULT:@SECLEVEL=0'
probe "TLS 1.2, CBC suites" -tls1_2 -cipher 'ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256'
probe "TLS 1.2, RSA key exchange" -tls1_2 -cipher 'AES128-GCM-SHA256:AES256-GCM-SHA384'
if command -v sslscan >/dev/null; then
  echo
  sslscan --no-colour "$target"
else
  echo "(sslscan is not installed: apt-get install -y sslscan for the full report)"
fi
