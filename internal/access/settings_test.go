package access

import "testing"

func TestOptionOf(t *testing.T) {
	for in, want := range map[string]string{
		"MaxConnections":                    "--max-connections",
		"MaxConnectionFromSingleIP":         "--max-connection-from-single-ip",
		"PreAuthenticatedConnectionTimeout": "--pre-authenticated-connection-timeout",
		"X509CertificateName":               "--x509-certificate-name",
		"LoginType":                         "--login-type",
	} {
		if got := OptionOf(in); got != want {
			t.Errorf("OptionOf(%s) = %s, want %s", in, got, want)
		}
	}
}
