// Package memo is a bounded memo table for values that never change once
// computed for a key — a certificate parsed from its DER, its described
// fields — so that a long-running process keeps what it uses and forgets
// what it stopped using, with a hard bound on size.
package memo

import "sync"

// DefaultMax is the size bound of a Table whose Max is 0.
const DefaultMax = 1 << 16

// Table maps keys to values in two generations: lookups find a key in
// either and keep it in (or move it to) the current one; when the current
// generation holds Max entries it becomes the previous one, and the old
// previous one is dropped. So a Table holds at most 2×Max entries, and an
// entry used at least once per Max insertions is never dropped. The zero
// value is ready to use. Safe for concurrent use.
type Table[K comparable, V any] struct {
	Max int // entries per generation; 0: DefaultMax

	mu   sync.Mutex
	cur  map[K]V
	prev map[K]V
}

// Get returns the value stored for k.
func (t *Table[K, V]) Get(k K) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.cur[k]; ok {
		return v, true
	}
	v, ok := t.prev[k]
	if ok {
		delete(t.prev, k)
		t.put(k, v)
	}
	return v, ok
}

// Put stores v for k.
func (t *Table[K, V]) Put(k K, v V) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.prev, k)
	t.put(k, v)
}

// Delete forgets k.
func (t *Table[K, V]) Delete(k K) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.cur, k)
	delete(t.prev, k)
}

// Len returns the number of entries held.
func (t *Table[K, V]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.cur) + len(t.prev)
}

func (t *Table[K, V]) put(k K, v V) {
	max := t.Max
	if max <= 0 {
		max = DefaultMax
	}
	if t.cur == nil {
		t.cur = map[K]V{}
	}
	if _, ok := t.cur[k]; !ok && len(t.cur) >= max {
		t.prev, t.cur = t.cur, map[K]V{}
	}
	t.cur[k] = v
}
