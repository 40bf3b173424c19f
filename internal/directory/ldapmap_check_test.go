package directory

import (
	"context"
	"reflect"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// TestMailboxMaildirInsideDataDirectory: a mailbox's Maildir is a path
// relative to its home server's data directory; one edited in the
// directory to lead out of it (../, an absolute path) makes the object
// unusable (16052) rather than a Maildir that POP3 and IMAP4 would open,
// list, and expunge from wherever it points.
func TestMailboxMaildirInsideDataDirectory(t *testing.T) {
	for _, c := range []struct {
		name, maildir string
		ok            bool
	}{
		{"ok/usual", "mail/contoso.test/bob", true},
		{"ok/none", "", true},
		{"fail/parent", "../../../home/alice/Maildir", false},
		{"fail/inner-parent", "mail/../../other-data/mail/contoso.test/alice", false},
		{"fail/absolute", "/var/mail/alice", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			attrs := map[string][]string{"certrelayAddress": {"bob@contoso.test"}, "certrelayHomeServer": {"hub1"}}
			if c.maildir != "" {
				attrs["certrelayMaildir"] = []string{c.maildir}
			}
			_, err := mailboxCodec.decode(ldap.NewEntry("cn=bob@contoso.test,ou=Mailboxes,dc=contoso,dc=test", attrs))
			if (err == nil) != c.ok {
				t.Errorf("Maildir %q: %v", c.maildir, err)
			}
		})
	}
}

// TestLDAPInternationalMailbox: a mailbox whose local part is not ASCII
// (SMTPUTF8, RFC 6531; mailbox add takes it) is stored in an
// organisation's directory as in the embedded one, and found in any case.
func TestLDAPInternationalMailbox(t *testing.T) {
	ctx := context.Background()
	l, _ := newLDAP(t)
	m := Mailbox{Address: "jürgen@contoso.test", Server: "hub1", Maildir: "mail/contoso.test/jürgen", PasswordHash: "$2a$10$abcdefghijklmnopqrstuv"}
	if err := l.PutMailbox(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Mailbox(ctx, "JÜRGEN@contoso.test"); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("Mailbox = %+v, %v; want %+v", got, err, m)
	}
}
