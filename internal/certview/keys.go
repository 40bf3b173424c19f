package certview

import (
	"fmt"
	"os"
	"path/filepath"

	"certrelay/internal/store"
)

// keyTrouble is what is wrong with a certificate's private key, in the
// words cert show (StatusDetail, Fix), cert explain and event 12014 use
// (SPEC C10, C11, S2).
type keyTrouble struct {
	Problem string // a clause about the certificate ("its private key file … is missing"); "" when all is well
	Fix     string // the command or step that repairs it
	Blocks  bool   // no service can use the certificate until it is fixed
}

// keyTrouble looks at the facts the store reports about e's key file:
// missing (the entry names a key the keys directory no longer holds), no
// key at all although services are enabled, unreadable by the service
// account, or open to other accounts (a mode wider than 0600, which still
// works but lets them copy the key) — or hidden from this account, which
// then cannot check any of it.
func (v *Viewer) keyTrouble(e store.Entry, ki store.KeyInfo, selfSigned bool) keyTrouble {
	t := e.Thumbprint
	acct := v.src.Store.Account()
	switch {
	case e.Pending():
		return keyTrouble{}
	case ki.Present && v.faults[e.KeyID].Matches(ki):
		f := v.faults[e.KeyID]
		fix := fmt.Sprintf("restore %s from a backup, or replace the certificate: ", ki.Path)
		if selfSigned {
			fix += fmt.Sprintf("certrelay cert new --from %s makes a new one with the same names and services", t)
		} else {
			fix += fmt.Sprintf("certrelay cert remove %s, then import it again with its key (certrelay cert import FILE.pfx --password-file PWFILE)", t)
		}
		return keyTrouble{
			Problem: fmt.Sprintf("its private key file %s cannot be loaded (%s), so no service can use it", ki.Path, f.Error),
			Fix:     fix,
			Blocks:  true,
		}
	case ki.Hidden:
		me := store.CurrentAccount().Name
		return keyTrouble{
			Problem: fmt.Sprintf("this account (%s) may not look into the key directory %s, so whether its private key file is there and readable by the service account %s is not checked", me, filepath.Dir(ki.Path), acct.Name),
			Fix:     fmt.Sprintf("run the command as %s or root to check it, or let other accounts look key files up: chmod 711 %s", acct.Name, filepath.Dir(ki.Path)),
		}
	case e.KeyID == "":
		if e.Services == store.None {
			return keyTrouble{}
		}
		return keyTrouble{
			Problem: fmt.Sprintf("the store holds no private key for it, so the services it is enabled for (%s) cannot use it", e.Services),
			Fix:     fmt.Sprintf("import it with its key: certrelay cert remove %s, then certrelay cert import FILE.pfx --password-file PWFILE", t),
			Blocks:  true,
		}
	case !ki.Present:
		fix := fmt.Sprintf("restore %s from a backup (mode 0600, owned by the service account %s), or replace the certificate: ", ki.Path, acct.Name)
		if selfSigned {
			fix += fmt.Sprintf("certrelay cert new --from %s makes a new one with the same names and services", t)
		} else {
			fix += fmt.Sprintf("certrelay cert remove %s, then import it again with its key (certrelay cert import FILE.pfx --password-file PWFILE) or a new one from the CA (certrelay cert request)", t)
		}
		return keyTrouble{
			Problem: fmt.Sprintf("its private key file %s is missing, so no service can use it", ki.Path),
			Fix:     fix,
			Blocks:  true,
		}
	case !ki.ServiceCanRead:
		return keyTrouble{
			Problem: fmt.Sprintf("the service account %s cannot read its private key file %s (mode %04o)", acct.Name, ki.Path, uint32(ki.Mode)),
			Fix:     fmt.Sprintf("certrelay cert enable %s --services SMTP, run as root or as the file's owner, gives the file to %s with mode 0600", t, acct.Name),
			Blocks:  true,
		}
	case ki.Mode&0o077 != 0:
		return keyTrouble{
			Problem: fmt.Sprintf("its private key file %s has mode %04o, wider than 0600: %s", ki.Path, uint32(ki.Mode), whoElse(ki.Mode)),
			Fix:     "chmod 600 " + ki.Path,
		}
	}
	return keyTrouble{}
}

// whoElse says which other accounts a key file's mode lets in.
func whoElse(m os.FileMode) string {
	switch {
	case m&0o004 != 0:
		return "every account on this machine can read the key"
	case m&0o040 != 0:
		return "every member of the file's group can read the key"
	}
	return "other accounts can change the key"
}

// join appends a second clause to a detail that may be empty.
func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
