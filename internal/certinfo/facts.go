package certinfo

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// A certificate's Info never changes: a store keeps it beside the
// certificate, encoded by MarshalFacts, so listing thousands of
// certificates needs neither parsing them nor verifying their
// signatures. The encoding is fields separated by the ASCII unit
// separator and list items by the record separator, after a version; an
// Info holding either character in a text field is not encoded (the
// store then parses the certificate, as before).
const (
	factsVersion = "f1"
	fieldSep     = "\x1f"
	itemSep      = "\x1e"
)

// MarshalFacts encodes in for a store; ok is false when it cannot be
// encoded faithfully.
func MarshalFacts(in Info) (string, bool) {
	texts := append([]string{in.Thumbprint, in.Subject, in.Issuer, in.SerialNumber, in.KeyAlgorithm, in.SignatureAlgorithm, in.KeyID},
		append(append(append([]string{}, in.CertificateDomains...), in.KeyUsage...), in.EnhancedKeyUsage...)...)
	for _, t := range texts {
		if strings.ContainsAny(t, fieldSep+itemSep) {
			return "", false
		}
	}
	f := []string{
		factsVersion,
		in.Thumbprint, in.Subject, in.Issuer,
		strings.Join(in.CertificateDomains, itemSep),
		strconv.FormatInt(in.NotBefore.Unix(), 10), strconv.FormatInt(in.NotAfter.Unix(), 10),
		boolText(in.IsSelfSigned), strconv.Itoa(in.PublicKeySize), in.SerialNumber, in.KeyAlgorithm,
		in.SignatureAlgorithm, strconv.Itoa(in.Version),
		strings.Join(in.KeyUsage, itemSep), strings.Join(in.EnhancedKeyUsage, itemSep),
		boolText(in.IsCA), in.KeyID,
	}
	return strings.Join(f, fieldSep), true
}

// ErrFacts is returned by UnmarshalFacts for text MarshalFacts did not
// write.
var ErrFacts = errors.New("not certificate facts of this version")

// UnmarshalFacts decodes what MarshalFacts wrote.
func UnmarshalFacts(s string) (Info, error) {
	f := strings.Split(s, fieldSep)
	if len(f) != 17 || f[0] != factsVersion {
		return Info{}, ErrFacts
	}
	nb, err1 := strconv.ParseInt(f[5], 10, 64)
	na, err2 := strconv.ParseInt(f[6], 10, 64)
	size, err3 := strconv.Atoi(f[8])
	ver, err4 := strconv.Atoi(f[12])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Info{}, ErrFacts
	}
	return Info{
		Thumbprint: f[1], Subject: f[2], Issuer: f[3],
		CertificateDomains: append([]string{}, items(f[4])...), // never nil, as Domains gives it
		NotBefore:          time.Unix(nb, 0).UTC(), NotAfter: time.Unix(na, 0).UTC(),
		IsSelfSigned: f[7] == "1", PublicKeySize: size, SerialNumber: f[9], KeyAlgorithm: f[10],
		SignatureAlgorithm: f[11], Version: ver,
		KeyUsage: items(f[13]), EnhancedKeyUsage: items(f[14]),
		IsCA: f[15] == "1", KeyID: f[16],
	}, nil
}

func items(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, itemSep)
}

func boolText(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
