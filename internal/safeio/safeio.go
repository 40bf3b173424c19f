// Package safeio writes files atomically and durably: a temporary file in
// the same directory, fsync, rename over the target, fsync of the
// directory. A reader sees the old content or the new, never a part, and
// after WriteFile returns the new content survives a crash.
package safeio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrExists is returned by WriteNew when path exists.
var ErrExists = errors.New("the file exists")

// WriteNew writes data to path as WriteFile does, but only if path does
// not exist: the finished temporary file is linked to path, which fails
// if something is there, even when another process creates it meanwhile.
// It returns an error wrapping ErrExists then, and writes nothing.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, func(tmp, path string) error {
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s: %w", path, ErrExists)
			}
			return err
		}
		return os.Remove(tmp)
	})
}

// WriteFile writes data to path with mode perm, atomically and durably.
// The mode is applied to the temporary file before any byte is written, so
// a private key is never readable by others, even for an instant.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Rename)
}

func write(path string, data []byte, perm os.FileMode, place func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := place(tmp, path); err != nil {
		if errors.Is(err, ErrExists) {
			return err
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
