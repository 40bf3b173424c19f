package certview

import (
	"context"
	"errors"
	"sync"
	"time"

	"certrelay/internal/selection"
	"certrelay/internal/store"
)

// CandidateSet keeps the selection candidates of the personal store for
// a long-running process (the server), changing only what changed: the
// certificates a change names (Update, fed from the database's change
// log), those whose key file changed (KeysChanged), or — when trust
// changed or a certificate's validity began or ended — every Status
// (Rejudge). A change to one certificate of 10,000 costs one row read and
// one judgement, not 10,000. Candidates are facts only: no private key is
// read. Safe for concurrent use.
type CandidateSet struct {
	src *Source

	mu      sync.Mutex
	v       *Viewer                        // trust state of the last Load or Rejudge
	entries map[string]store.Entry         // by thumbprint
	pos     map[string]int                 // thumbprint → index in cands
	byKey   map[string]map[string]struct{} // key ID → thumbprints
	cands   []selection.Candidate
	shared  bool // cands was handed out: copy before changing it
}

// NewCandidateSet returns an empty set; Load fills it.
func (s *Source) NewCandidateSet() *CandidateSet { return &CandidateSet{src: s} }

// Load reads the whole store and the trust state again.
func (cs *CandidateSet) Load(ctx context.Context) error {
	entries, err := cs.src.Store.List(ctx)
	if err != nil {
		return err
	}
	v, err := cs.src.Viewer(ctx)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.v = v
	cs.entries = make(map[string]store.Entry, len(entries))
	cs.pos = make(map[string]int, len(entries))
	cs.byKey = map[string]map[string]struct{}{}
	cs.cands = v.candidates(entries)
	cs.shared = false
	for i, e := range entries {
		cs.entries[e.Thumbprint] = e
		cs.pos[e.Thumbprint] = i
		cs.key(e)
	}
	return nil
}

// Update reads again the certificates with these thumbprints: changed,
// added, or gone from the store. An empty thumbprint means "any": the
// whole store is read again.
func (cs *CandidateSet) Update(ctx context.Context, thumbprints []string) error {
	for _, t := range thumbprints {
		if t == "" {
			return cs.Load(ctx)
		}
	}
	type got struct {
		t    string
		e    store.Entry
		gone bool
	}
	var read []got
	for _, t := range thumbprints {
		e, err := cs.src.Store.Get(ctx, t)
		switch {
		case errors.Is(err, store.ErrNotFound):
			read = append(read, got{t: t, gone: true})
		case err != nil:
			return err
		default:
			read = append(read, got{t: t, e: e})
		}
	}
	faults, err := cs.src.Store.KeyFaults(ctx)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.v == nil {
		return errors.New("internal: CandidateSet.Update before Load")
	}
	cs.v.now, cs.v.faults = cs.src.Now(), faults
	for _, g := range read {
		if g.gone {
			cs.remove(g.t)
		} else {
			cs.set(g.e)
		}
	}
	return nil
}

// KeysChanged judges again the key facts of the certificates that use
// these keys (their files were written, removed, or changed owner or
// mode). It reports how many certificates that concerned.
func (cs *CandidateSet) KeysChanged(keyIDs []string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.v == nil {
		return 0
	}
	cs.v.now = cs.src.Now()
	n := 0
	for _, id := range keyIDs {
		for t := range cs.byKey[id] {
			cs.set(cs.entries[t])
			n++
		}
	}
	return n
}

// Rejudge reads the trust state again and judges every certificate
// against it and the clock now: for a trust change (a root, an
// intermediate, a revocation result), and when a certificate's validity
// begins or ends.
func (cs *CandidateSet) Rejudge(ctx context.Context) error {
	v, err := cs.src.Viewer(ctx)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.v == nil {
		return errors.New("internal: CandidateSet.Rejudge before Load")
	}
	cs.v = v
	entries := make([]store.Entry, len(cs.cands))
	for t, i := range cs.pos {
		entries[i] = cs.entries[t]
	}
	cs.cands = v.candidates(entries) // a new slice: the old one may be shared
	cs.shared = false
	return nil
}

// Candidates returns the candidates, in no particular order (selection's
// decisions do not depend on it), and the time they were judged at. The
// slice is the caller's to keep: later changes copy it first.
func (cs *CandidateSet) Candidates() ([]selection.Candidate, time.Time) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.shared = true
	if cs.v == nil {
		return nil, cs.src.Now()
	}
	return cs.cands, cs.v.now
}

// Len returns the number of certificates and requests in the set.
func (cs *CandidateSet) Len() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.cands)
}

// writable makes cands safe to change: a copy, when it was handed out.
func (cs *CandidateSet) writable() {
	if cs.shared {
		cs.cands = append(make([]selection.Candidate, 0, len(cs.cands)+8), cs.cands...)
		cs.shared = false
	}
}

// set adds or replaces e's candidate. The caller holds cs.mu.
func (cs *CandidateSet) set(e store.Entry) {
	cs.writable()
	if old, ok := cs.entries[e.Thumbprint]; ok && old.KeyID != e.KeyID {
		cs.unkey(old)
	}
	cs.entries[e.Thumbprint] = e
	cs.key(e)
	c := cs.v.Candidate(e)
	if i, ok := cs.pos[e.Thumbprint]; ok {
		cs.cands[i] = c
		return
	}
	cs.pos[e.Thumbprint] = len(cs.cands)
	cs.cands = append(cs.cands, c)
}

// remove drops the candidate with thumbprint t. The caller holds cs.mu.
func (cs *CandidateSet) remove(t string) {
	i, ok := cs.pos[t]
	if !ok {
		return
	}
	cs.writable()
	cs.unkey(cs.entries[t])
	last := len(cs.cands) - 1
	if i != last {
		cs.cands[i] = cs.cands[last]
		cs.pos[cs.cands[i].Thumbprint] = i
	}
	cs.cands[last] = selection.Candidate{}
	cs.cands = cs.cands[:last]
	delete(cs.pos, t)
	delete(cs.entries, t)
}

// key notes that e uses its key. The caller holds cs.mu.
func (cs *CandidateSet) key(e store.Entry) {
	if e.KeyID == "" {
		return
	}
	users := cs.byKey[e.KeyID]
	if users == nil {
		users = map[string]struct{}{}
		cs.byKey[e.KeyID] = users
	}
	users[e.Thumbprint] = struct{}{}
}

func (cs *CandidateSet) unkey(e store.Entry) {
	if users := cs.byKey[e.KeyID]; users != nil {
		delete(users, e.Thumbprint)
		if len(users) == 0 {
			delete(cs.byKey, e.KeyID)
		}
	}
}
