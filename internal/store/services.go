package store

import "certrelay/internal/certprop"

// Services is the set of services a certificate is enabled for (SPEC C8);
// it is defined in certprop so that selection can use it without the
// store.
type Services = certprop.Services

// The services of SPEC §1.
const (
	IMAP = certprop.IMAP
	POP  = certprop.POP
	UM   = certprop.UM
	IIS  = certprop.IIS
	SMTP = certprop.SMTP
	None = certprop.None
)

// ParseServices reads a list such as "SMTP,POP" (see certprop.ParseServices).
func ParseServices(list string) (Services, error) { return certprop.ParseServices(list) }
