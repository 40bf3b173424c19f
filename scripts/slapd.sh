#!/bin/sh
# Starts an OpenLDAP slapd with certrelay's schema and LDAP Sync, for
# trying an organisation of certrelay servers on one machine
# (docs/DIRECTORY.md). `make slapd` runs it.
#
#   scripts/slapd.sh [DIR] [PORT]     (default ./slapd and 3890)
#
# It writes DIR/slapd.conf, the database in DIR/db, two passwords (mode
# 0600): DIR/admin.pw for the directory's administrator and
# DIR/certrelay.pw for the account the servers bind as — which may write
# the organisation's tree, ou=certrelay,dc=example,dc=com, and nothing
# else — and starts slapd on 127.0.0.1:PORT in the background. Run again on
# the same DIR, it starts the same directory again. Stop it with:
#   kill "$(cat DIR/slapd.pid)"
set -eu

dir=${1:-./slapd}
port=${2:-3890}
suffix="dc=example,dc=com"
base="ou=certrelay,$suffix"
schema=$(cd "$(dirname "$0")/.." && pwd)/schema/certrelay.schema
for c in slapd slaptest slappasswd ldapadd; do
	command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || { echo "slapd.sh: $c is missing: install slapd and ldap-utils (make deps)" >&2; exit 1; }
done
PATH="$PATH:/usr/sbin"
mkdir -p "$dir/db"
dir=$(cd "$dir" && pwd)
umask 077
if [ -f "$dir/slapd.pid" ] && kill -0 "$(cat "$dir/slapd.pid")" 2>/dev/null; then
	echo "slapd.sh: slapd already runs from $dir (pid $(cat "$dir/slapd.pid"))" >&2
	exit 1
fi
fresh=no
if [ ! -f "$dir/slapd.conf" ]; then
	fresh=yes
	openssl rand -base64 18 | tr -d "\n" >"$dir/admin.pw"
	openssl rand -base64 18 | tr -d "\n" >"$dir/certrelay.pw"
	cat >"$dir/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include $schema
pidfile $dir/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
database mdb
maxsize 1073741824
suffix "$suffix"
rootdn "cn=admin,$suffix"
rootpw $(slappasswd -T "$dir/admin.pw")
directory $dir/db
index objectClass,cn,certrelayAddress eq
index entryUUID,entryCSN eq
# The servers read every object of the organisation.
limits dn.exact="cn=certrelay,$suffix" size=unlimited time=unlimited
# Mailboxes' password hashes and edge subscriptions' bootstrap secrets: the servers only.
access to attrs=certrelayPasswordHash,certrelayEdgeSyncBootstrap
	by dn.exact="cn=certrelay,$suffix" write
	by * none
# The organisation's tree: the servers write it, other accounts read it.
access to dn.subtree="$base"
	by dn.exact="cn=certrelay,$suffix" write
	by users read
	by * none
access to *
	by users read
	by anonymous auth
	by * none
# LDAP Sync (RFC 4533): how running servers learn of changes at once.
overlay syncprov
syncprov-checkpoint 100 1
EOF
	slaptest -Q -f "$dir/slapd.conf" -u
fi
slapd -f "$dir/slapd.conf" -h "ldap://127.0.0.1:$port/"
i=0
until ldapsearch -x -H "ldap://127.0.0.1:$port/" -b "" -s base >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "slapd.sh: slapd did not start; try: slapd -d 1 -f $dir/slapd.conf -h ldap://127.0.0.1:$port/" >&2; exit 1; }
	sleep 0.1
done
if [ "$fresh" = yes ]; then
	ldapadd -x -H "ldap://127.0.0.1:$port/" -D "cn=admin,$suffix" -y "$dir/admin.pw" >/dev/null <<EOF
dn: $suffix
objectClass: dcObject
objectClass: organization
dc: example
o: certrelay organisation

dn: cn=certrelay,$suffix
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: certrelay
description: the account certrelay servers bind as
userPassword: $(slappasswd -T "$dir/certrelay.pw")

dn: $base
objectClass: organizationalUnit
ou: certrelay
EOF
fi
cat <<EOF
slapd runs on 127.0.0.1:$port (pid $(cat "$dir/slapd.pid")); stop it with: kill \$(cat $dir/slapd.pid)
Join a server to the organisation:
  certrelay --data DATA-DIR setup --name hub1 --fqdn hub1.example.com \\
      --directory ldap://127.0.0.1:$port/$base \\
      --bind-dn cn=certrelay,$suffix --bind-password-file $dir/certrelay.pw
EOF
