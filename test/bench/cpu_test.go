//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CPU per message, and a file system that is the same for every run.
//
// Wall-clock rates on this shared two-core machine move with the
// neighbours' load; the CPU time a server spends per message or session
// (user + system, from /proc/PID/stat) moves much less, and it is what a
// change to the server moves. So every certrelay run also reports its
// server's CPU per message, and the STARTTLS sessions are compared with
// the floor by the server's CPU per session against the server's CPU per
// bare crypto/tls handshake (floorServer), both measured the same way.

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the user and system CPU time process pid has used.
func procCPU(pid int) (time.Duration, error) {
	own, _, err := procTimes(pid)
	return own, err
}

// procTimes returns the user and system CPU time process pid has used,
// and that of its children it has waited for (cutime + cstime).
func procTimes(pid int) (own, reaped time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var v [4]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[11+i], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: bad times %q", pid, f[11:15])
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }
	return tick(v[0] + v[1]), tick(v[2] + v[3]), nil
}

// treeCPU returns the CPU time of a process-per-session server: its
// master root, every process under it, and the children they have
// already waited for (Postfix's smtpd, cleanup, qmgr, trivial-rewrite,
// discard or virtual that came and went during the load). A process that
// exits between two reads may be missed once or counted twice; over a
// load of thousands of messages that is in the noise.
func treeCPU(root int) (time.Duration, error) {
	var sum time.Duration
	for i, pid := range processTree(root) {
		own, reaped, err := procTimes(pid)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue // gone since the tree was read
		}
		sum += own + reaped
	}
	return sum, nil
}

// settledCPU waits until cpu (a server's CPU time: procCPU or treeCPU of
// its process) has not moved for 300 ms (the work a load left behind —
// deliveries after the last 250 — is done), at most limit, and returns it
// then.
func settledCPU(t *testing.T, cpu func() (time.Duration, error), limit time.Duration) time.Duration {
	t.Helper()
	last, err := cpu()
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(limit); time.Now().Before(end); {
		time.Sleep(300 * time.Millisecond)
		now, err := cpu()
		if err != nil {
			t.Fatal(err)
		}
		if now == last {
			break
		}
		last = now
	}
	return last
}

// spreadTempDirs points TMPDIR (every run's data directory, certrelay's
// and Postfix's) to a new directory marked as the top of a directory
// hierarchy (chattr +T, FS_TOPDIR_FL): ext4 then places each directory
// made in it in a block group of its own, as it places home directories,
// instead of beside its parent. Why: on an ext4 without a journal (this
// machine's) the inode allocator skips every inode of the group freed in
// the last 60 s (300 s while its inode table is dirty), checking each one,
// so a file created in a group where thousands of files were just
// removed — the previous run's data directory, Postfix's queue files, the
// other engineers' tests in /tmp — costs up to 500 µs of system time
// instead of 20 µs. Both servers get a group that is not their
// predecessor's. It returns what was done, for the report, and a cleanup.
func spreadTempDirs() (note string, cleanup func()) {
	dir, err := os.MkdirTemp("", "certrelay-bench-runs-")
	if err != nil {
		return "temporary directories not spread: " + err.Error(), func() {}
	}
	cleanup = func() { os.RemoveAll(dir) }
	// Postfix's runs must traverse it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "temporary directories not spread: " + err.Error(), cleanup
	}
	os.Setenv("TMPDIR", dir)
	if err := setTopDir(dir); err != nil {
		return fmt.Sprintf("each run's directory in %s (not marked as a top directory: %v)", filepath.Base(dir), err), cleanup
	}
	return "each run's directory in a directory marked chattr +T, so ext4 gives it a block group of its own", cleanup
}

// fsTopDirFL is FS_TOPDIR_FL of <linux/fs.h> (x/sys/unix does not name
// it): "top of directory hierarchies" for ext2/3/4's Orlov allocator.
const fsTopDirFL = 0x00020000

// setTopDir sets FS_TOPDIR_FL on dir.
func setTopDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return fmt.Errorf("FS_IOC_GETFLAGS: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsTopDirFL)); err != nil {
		return fmt.Errorf("FS_IOC_SETFLAGS: %w", err)
	}
	return nil
}

// quiesceFS writes back everything dirty (sync(2)), so a run does not pay
// for the write-back of the previous run's files — its removal, Postfix's
// queue — in its own syncs, and returns the kernel's dirty and
// write-back memory before the sync, for the run's line.
func quiesceFS() string {
	before := meminfo("Dirty", "Writeback")
	unix.Sync()
	return before
}

// meminfo returns the named /proc/meminfo fields as "Dirty 12 MiB …".
func meminfo(names ...string) string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return ""
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, n := range names {
			if k == n {
				kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				out = append(out, fmt.Sprintf("%s %.1f MiB", n, float64(kb)/1024))
			}
		}
	}
	return strings.Join(out, ", ")
}

// micros is d per n in microseconds.
func micros(d time.Duration, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

// pinCommand makes cmd run on cpus (taskset's list: "0"; "": any) from
// its first instruction, so that a Go server sizes GOMAXPROCS to them.
func pinCommand(t *testing.T, cmd *exec.Cmd, cpus string) {
	t.Helper()
	if cpus == "" {
		return
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		t.Fatalf("taskset (util-linux) is needed to pin a server: %v", err)
	}
	cmd.Args = append([]string{ts, "-c", cpus}, cmd.Args...)
	cmd.Path = ts
}

// pinSelf moves every thread of this test process, and so the clients
// it runs and the processes it starts from now on (smtpload), to cpu; it
// returns how to give the process back the CPUs it had.
func pinSelf(t *testing.T, cpu int) (undo func()) {
	t.Helper()
	var was, to unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		t.Fatal(err)
	}
	to.Set(cpu)
	if err := setThreadsAffinity(&to); err != nil {
		t.Fatalf("pinning the test process to CPU %d: %v", cpu, err)
	}
	return func() {
		if err := setThreadsAffinity(&was); err != nil {
			t.Errorf("giving the test process its CPUs back: %v", err)
		}
	}
}

// setThreadsAffinity sets the affinity of every thread of this process
// (sched_setaffinity acts on one thread; a new thread inherits its
// creator's), going over the threads until no new one turned up.
func setThreadsAffinity(set *unix.CPUSet) error {
	done := map[int]bool{}
	for {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		fresh := false
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			fresh = true
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				return err
			}
			done[tid] = true
		}
		if !fresh {
			return nil
		}
	}
}
