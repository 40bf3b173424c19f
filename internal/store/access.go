package store

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"
	"syscall"
)

// AccessRule says what one account (or class of accounts) may do with a
// private key file: SPEC C11's AccessRules, read from the key file's owner,
// group and mode.
type AccessRule struct {
	Account string // user or group name ("uid 1001" when it has no name)
	Kind    string // "owner", "group" or "other"
	Rights  string // "Read", "Read, Write", "Write"
}

// Account identifies the service account: the account the transport runs
// as and must be able to read the keys of the certificates it uses.
type Account struct {
	Name string
	UID  int
	GID  int
}

// LookupAccount resolves a user name or numeric uid.
func LookupAccount(name string) (Account, error) {
	var u *user.User
	var err error
	if _, nerr := strconv.Atoi(name); nerr == nil {
		u, err = user.LookupId(name)
	} else {
		u, err = user.Lookup(name)
	}
	if err != nil {
		return Account{}, fmt.Errorf("service account %q: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return Account{Name: u.Username, UID: uid, GID: gid}, nil
}

// CurrentAccount is the account this process runs as.
func CurrentAccount() Account {
	a := Account{UID: os.Getuid(), GID: os.Getgid(), Name: strconv.Itoa(os.Getuid())}
	if u, err := user.LookupId(a.Name); err == nil {
		a.Name = u.Username
	}
	return a
}

// DirOwner is the account that owns dir: the service account when none
// is configured (settings.ServiceAccount). Every process — the server,
// and a command run by any account that may read the data directory —
// so judges key access for the same account. When dir cannot be read it
// is the account running this process.
func DirOwner(dir string) Account {
	fi, err := os.Stat(dir)
	if err != nil {
		return CurrentAccount()
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return CurrentAccount()
	}
	a := Account{UID: int(st.Uid), GID: int(st.Gid), Name: userName(st.Uid)}
	if u, err := user.LookupId(strconv.Itoa(a.UID)); err == nil {
		a.Name = u.Username
		if gid, err := strconv.Atoi(u.Gid); err == nil {
			a.GID = gid // the account's own group, as LookupAccount gives
		}
	}
	return a
}

func rights(bits os.FileMode) string {
	switch {
	case bits&4 != 0 && bits&2 != 0:
		return "Read, Write"
	case bits&4 != 0:
		return "Read"
	case bits&2 != 0:
		return "Write"
	}
	return ""
}

// Account names are looked up once per process: listing a store of many
// keys would otherwise read /etc/passwd and /etc/group for each.
var userNames, groupNames sync.Map

func userName(uid uint32) string {
	if n, ok := userNames.Load(uid); ok {
		return n.(string)
	}
	n := fmt.Sprintf("uid %d", uid)
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		n = u.Username
	}
	userNames.Store(uid, n)
	return n
}

func groupName(gid uint32) string {
	if n, ok := groupNames.Load(gid); ok {
		return n.(string)
	}
	n := fmt.Sprintf("gid %d", gid)
	if g, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
		n = g.Name
	}
	groupNames.Store(gid, n)
	return n
}

// accessRules derives the rules from a stat of the key file.
func accessRules(fi os.FileInfo) []AccessRule {
	st, ok := fi.Sys().(*syscall.Stat_t)
	mode := fi.Mode().Perm()
	var out []AccessRule
	owner, group := "owner", "group"
	if ok {
		owner, group = userName(st.Uid), groupName(st.Gid)
	}
	if r := rights(mode >> 6); r != "" {
		out = append(out, AccessRule{Account: owner, Kind: "owner", Rights: r})
	}
	if r := rights(mode >> 3); r != "" {
		out = append(out, AccessRule{Account: group, Kind: "group", Rights: r})
	}
	if r := rights(mode); r != "" {
		out = append(out, AccessRule{Account: "everyone", Kind: "other", Rights: r})
	}
	return out
}

// canRead reports whether acct may read a file with this stat. Root reads
// everything.
func canRead(fi os.FileInfo, acct Account) bool {
	if acct.UID == 0 {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	mode := fi.Mode().Perm()
	if !ok {
		return false
	}
	switch {
	case int(st.Uid) == acct.UID:
		return mode&0o400 != 0
	case int(st.Gid) == acct.GID:
		return mode&0o040 != 0
	}
	return mode&0o004 != 0
}
