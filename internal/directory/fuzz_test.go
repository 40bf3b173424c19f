package directory

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// FuzzDecodeEntry: whatever an administrator (or an attacker with write
// access) puts in the directory, decoding an entry of any kind returns an
// object or an error, never panics.
func FuzzDecodeEntry(f *testing.F) {
	f.Add("cn=hub1,ou=Servers,dc=x", "hub1", "hub", "3082", "AB", "TRUE", "5", "00:10:00", "*;1")
	f.Add("cn=Default hub1,cn=hub1,ou=Servers,dc=x", "", "edge", "", "", "maybe", "-1", "1.00:00:00", "contoso.test;x")
	f.Add("", "", "", "\x00", "", "", "99999999999999999999", "25:61:00", ";")
	f.Fuzz(func(t *testing.T, dn, cn, role, blob, thumb, boolean, number, dur, space string) {
		attrs := map[string][]string{
			"cn": {cn}, "certrelayRole": {role}, "certrelayInternalCert": {blob}, "certrelayInternalCertThumbprint": {thumb},
			"certrelayRequireTLS": {boolean}, "certrelayEnabled": {boolean}, "certrelayMaxMessageSize": {number}, "certrelayPort": {number},
			"certrelayConnectionTimeout": {dur}, "certrelayAddressSpace": {space}, "certrelayCertificate": {blob}, "certrelayThumbprint": {thumb},
			"certrelayRootSource": {role}, "certrelayDefault": {boolean}, "certrelayAddress": {cn},
		}
		e := ldap.NewEntry(dn, attrs)
		_, _ = serverCodec.decode(e)
		_, _ = receiveCodec.decode(e)
		_, _ = sendCodec.decode(e)
		_, _ = domainCodec.decode(e)
		_, _ = mailboxCodec.decode(e)
		_, _ = rootCodec.decode(e)
		_ = kindOf(e)
	})
}
