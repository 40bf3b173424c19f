package memo

import "testing"

// TestBounded: a table never holds more than two generations, keeps what
// is used, and drops what is not.
func TestBounded(t *testing.T) {
	tab := Table[int, int]{Max: 4}
	for i := 0; i < 100; i++ {
		tab.Put(i, i*i)
		if _, ok := tab.Get(0); !ok && i > 0 {
			t.Fatalf("key 0, used after every insertion, was dropped at %d", i)
		}
		if n := tab.Len(); n > 8 {
			t.Fatalf("%d entries with Max 4", n)
		}
	}
	if _, ok := tab.Get(1); ok {
		t.Error("key 1, never used again, is still held")
	}
	if v, ok := tab.Get(99); !ok || v != 99*99 {
		t.Errorf("Get(99) = %d, %v", v, ok)
	}
	tab.Delete(99)
	if _, ok := tab.Get(99); ok {
		t.Error("Delete kept the key")
	}
	var zero Table[string, bool]
	zero.Put("a", true)
	if v, ok := zero.Get("a"); !ok || !v {
		t.Error("the zero Table does not work")
	}
}
