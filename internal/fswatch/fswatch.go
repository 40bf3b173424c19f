// Package fswatch reports changes to the files of a few directories, with
// Linux's inotify(7): a file written, closed after writing, created,
// removed, renamed, or its owner or mode changed. It is how a running
// server learns, without polling, that another process committed to the
// database (its write-ahead log is written, and closed when that process
// ends — even when it is killed) or changed a key file.
package fswatch

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Op is what happened to a file.
type Op uint32

// Ops; an event may carry several.
const (
	Write    Op = syscall.IN_MODIFY      // data written
	Closed   Op = syscall.IN_CLOSE_WRITE // closed by a process that had it open for writing
	Attrib   Op = syscall.IN_ATTRIB      // owner, mode or times changed
	Create   Op = syscall.IN_CREATE
	Remove   Op = syscall.IN_DELETE
	MoveFrom Op = syscall.IN_MOVED_FROM
	MoveTo   Op = syscall.IN_MOVED_TO
	// Overflow: the kernel dropped events; anything may have changed.
	Overflow Op = syscall.IN_Q_OVERFLOW
)

const mask = uint32(Write | Closed | Attrib | Create | Remove | MoveFrom | MoveTo)

// Event is one change: Name is the file's name in Dir ("" for Overflow).
type Event struct {
	Dir  string
	Name string
	Op   Op
}

// Watcher watches directories (not their subdirectories). Events arrive
// on Events until Close, which closes the channel.
type Watcher struct {
	Events <-chan Event

	f    *os.File
	dirs map[int32]string // watch descriptor → directory
	once sync.Once
	done chan struct{}
}

// New watches dirs.
func New(dirs ...string) (*Watcher, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &Watcher{f: os.NewFile(uintptr(fd), "inotify"), dirs: map[int32]string{}, done: make(chan struct{})}
	for _, d := range dirs {
		wd, err := syscall.InotifyAddWatch(fd, d, mask|syscall.IN_ONLYDIR)
		if err != nil {
			w.f.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
		w.dirs[int32(wd)] = d
	}
	ch := make(chan Event, 256)
	w.Events = ch
	go w.read(ch)
	return w, nil
}

// Close stops watching.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		close(w.done)
		err = w.f.Close() // the poller wakes the blocked Read
	})
	return err
}

func (w *Watcher) read(ch chan<- Event) {
	defer close(ch)
	var buf [64 * (syscall.SizeofInotifyEvent + syscall.NAME_MAX + 1)]byte
	for {
		n, err := w.f.Read(buf[:])
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			select { // an unexpected error: say anything may have changed, once
			case ch <- Event{Op: Overflow}:
			case <-w.done:
			}
			return
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			raw := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := ""
			if raw.Len > 0 {
				b := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(raw.Len)]
				for i, c := range b {
					if c == 0 {
						b = b[:i]
						break
					}
				}
				name = string(b)
			}
			off += syscall.SizeofInotifyEvent + int(raw.Len)
			if raw.Mask&syscall.IN_IGNORED != 0 {
				continue
			}
			select {
			case ch <- Event{Dir: w.dirs[raw.Wd], Name: name, Op: Op(raw.Mask)}:
			case <-w.done:
				return
			}
		}
	}
}
