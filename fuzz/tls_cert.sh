#!/usr/bin/env bash
# Write fuzz/tls_cert.h: the keys and certificates fuzz_tls.c serves and
# presents, made here with the openssl command (Ed25519: fast handshakes,
# and signatures of one fixed size, so that a run repeats byte for byte).
#
#   server  CN=fuzz.test, self-signed; the clients trust it
#   big     the same key, with some 800 subjectAltNames: a certificate of
#           about 14 KiB, so that the server's first flight is larger than
#           a small socket buffer (the handshake then waits to send)
#   client  a client certificate whose subject needs RFC 2253 escaping;
#           self-signed, and the server's ca_certs
#
# Run it again to replace them (the harness needs no other change: the
# client's subject is written out too).
set -euo pipefail
cd "$(dirname "$0")"
command -v openssl >/dev/null || { echo "tls_cert.sh needs the openssl command" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

days=36500
openssl genpkey -algorithm ed25519 -out "$tmp/server.key" 2>/dev/null
openssl req -new -x509 -key "$tmp/server.key" -out "$tmp/server.pem" -days "$days" \
  -subj "/CN=fuzz.test" -addext "subjectAltName=DNS:fuzz.test" 2>/dev/null

san="DNS:fuzz.test"
for i in $(seq 1 800); do san="$san,DNS:n$i.fuzz.test"; done
openssl req -new -x509 -key "$tmp/server.key" -out "$tmp/big.pem" -days "$days" \
  -subj "/CN=big.fuzz.test" -addext "subjectAltName=$san" 2>/dev/null

openssl genpkey -algorithm ed25519 -out "$tmp/client.key" 2>/dev/null
openssl req -new -x509 -key "$tmp/client.key" -out "$tmp/client.pem" -days "$days" \
  -subj "/O=fuzz, client/OU=a\\+b/CN=client.fuzz.test" 2>/dev/null
dn=$(openssl x509 -in "$tmp/client.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')

# A PEM file as a C string literal, one line of it per source line.
literal() {
  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$1"
}

{
  echo "/*"
  echo " * tls_cert.h - written by fuzz/tls_cert.sh (do not edit): the keys and"
  echo " * certificates of fuzz_tls.c, made with $(openssl version | cut -d' ' -f1-2)."
  echo " */"
  echo "#ifndef FUZZ_TLS_CERT_H"
  echo "#define FUZZ_TLS_CERT_H"
  echo
  echo "static const char FZ_SERVER_KEY[] ="
  literal "$tmp/server.key"
  echo "    ;"
  echo
  echo "static const char FZ_SERVER_CERT[] ="
  literal "$tmp/server.pem"
  echo "    ;"
  echo
  echo "/* The same key, with some 800 subjectAltNames. */"
  echo "static const char FZ_BIG_CERT[] ="
  literal "$tmp/big.pem"
  echo "    ;"
  echo
  echo "static const char FZ_CLIENT_KEY[] ="
  literal "$tmp/client.key"
  echo "    ;"
  echo
  echo "static const char FZ_CLIENT_CERT[] ="
  literal "$tmp/client.pem"
  echo "    ;"
  echo
  echo "/* The client certificate's subject as the server reports it (RFC 2253). */"
  printf '#define FZ_CLIENT_DN "%s"\n' "$(printf '%s' "$dn" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
  echo
  echo "#endif"
} >tls_cert.h
echo "wrote fuzz/tls_cert.h ($(wc -c <tls_cert.h) bytes; client subject: $dn)"
