#!/bin/sh
# Installs the outside programs the tests drive (SPEC: real peers, no mocks;
# tmux gives the cmdlet shell its pseudo-terminal),
# from Debian's packages, when any is missing. Run by `make deps`, which
# `make test` runs first; `install-deps.sh bench` (make bench) adds
# Dovecot, the IMAP4/POP3 baseline. Needs root (or sudo) only when
# something is missing.
set -eu

need=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
for c in openssl swaks postfix slapd ldapadd testssl python3 tmux chromium curl mbsync fetchmail sipsak; do
	have "$c" || need="$need $c"
done
bench=""
if [ "${1:-}" = bench ]; then
	# Dovecot's IMAP4 and POP3 servers, for make bench only.
	[ -x /usr/lib/dovecot/imap ] && [ -x /usr/lib/dovecot/pop3 ] || { need="$need dovecot"; bench="dovecot-imapd dovecot-pop3d"; }
fi
# swaks needs these Perl modules for STARTTLS and AUTH.
perl -MNet::SSLeay -MIO::Socket::SSL -MAuthen::SASL -e1 >/dev/null 2>&1 || need="$need perl-tls"

if [ -z "$need" ]; then
	exit 0
fi
echo "install-deps: missing:$need; installing from Debian's packages" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
		echo "install-deps: run as root (or install sudo) to install:$need" >&2
		exit 1
	fi
fi
$SUDO apt-get update -qq
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
echo "postfix postfix/mailname string localhost" | $SUDO debconf-set-selections
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	openssl postfix swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl \
	testssl.sh slapd ldap-utils python3 tmux chromium curl isync fetchmail sipsak $bench >/dev/null
# chromium is the console's browser (test/e2e drives it with chromedp over
# the DevTools protocol: no chromium-driver needed); curl reads /metrics.
# Postinst starts neither postfix, slapd nor dovecot on these machines, and the tests
# run their own on other ports; nothing here stops a process it did not
# start (a system's own slapd or Postfix may be serving someone).
echo "install-deps: done" >&2
