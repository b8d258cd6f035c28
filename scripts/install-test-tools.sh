#!/usr/bin/env bash
# Programs the interop tests drive, from Debian's packages, installed only when missing.
#   gpg (gnupg): decrypts exported mail without Letterlock.
set -euo pipefail

missing=()
command -v gpg >/dev/null 2>&1 || missing+=(gnupg)
#   gpg-wks-client: GnuPG's own computation of an address's WKD URL.
[ -x /usr/lib/gnupg/gpg-wks-client ] || missing+=(gpg-wks-client)
#   dirmngr: GnuPG's network client, which fetches keys by WKD for `gpg --locate-keys`.
command -v dirmngr >/dev/null 2>&1 || missing+=(dirmngr)
#   unshare, mount (util-linux, mount): a private mount namespace in which only that gpg sees
#   the test CA as the system trust store and a loopback hosts mapping.
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v mount >/dev/null 2>&1 || missing+=(mount)
#   curl: fetches over pop3s:// (and imaps://, smtp://) as a client nobody here wrote.
command -v curl >/dev/null 2>&1 || missing+=(curl)
#   python3: its poplib, imaplib and smtplib are the reference clients.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
#   mbsync (isync): syncs a mailbox both ways over IMAPS.
command -v mbsync >/dev/null 2>&1 || missing+=(isync)
#   openssl: makes certificates and signs S/MIME mail as a signer nobody here wrote.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
#   fetchmail: drains a maildrop over POP3S.
command -v fetchmail >/dev/null 2>&1 || missing+=(fetchmail)
#   swaks: an SMTP client for MX and submission; its TLS and AUTH need these Perl modules.
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
perl -MNet::SSLeay -e1 >/dev/null 2>&1 || missing+=(libnet-ssleay-perl)
perl -MIO::Socket::SSL -e1 >/dev/null 2>&1 || missing+=(libio-socket-ssl-perl)
perl -MAuthen::SASL -e1 >/dev/null 2>&1 || missing+=(libauthen-sasl-perl)

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing test tools: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

#   dkimpy (PyNaCl for its Ed25519, RFC 8463; authres for its ARC sealing): verifies outbound
#   DKIM signatures and signs test mail. From PyPI when the python3 on PATH has pip (it may not
#   be Debian's), else Debian's packages.
if ! python3 -c 'import dkim, nacl, authres' >/dev/null 2>&1; then
  if python3 -m pip --version >/dev/null 2>&1; then
    echo "installing test tools: dkimpy pynacl authres (pip)"
    python3 -m pip install -q dkimpy pynacl dnspython authres 2>/dev/null \
      || python3 -m pip install -q --break-system-packages dkimpy pynacl dnspython authres
  else
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "installing test tools: python3-dkim python3-nacl python3-authres"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-dkim python3-nacl \
      python3-authres >/dev/null
  fi
fi
