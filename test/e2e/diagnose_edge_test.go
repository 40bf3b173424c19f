package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runStep runs one step of a finding's fix exactly as printed, by
// /bin/sh, on the server whose data directory e is (a fix that spans
// servers says in its note where each step runs).
func (e *env) runStep(command string) string {
	e.t.Helper()
	if !strings.HasPrefix(command, "certrelay ") {
		e.t.Fatalf("a fix that is no certrelay command: %q", command)
	}
	var out bytes.Buffer
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), e.extra...)
	cmd.Env = append(cmd.Env, "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), "CERTRELAY_DATA="+e.data)
	cmd.Dir = e.work
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("the fix %q on %s: %v\n%s", command, e.data, err, out.String())
	}
	return out.String()
}

// TestDiagnoseSeed004StaleEdgeSubscription (seed 004's last fix, Q9): an
// edge rebuilt from scratch no longer proves itself to the hubs (16091);
// diagnose on the hub names the stale subscription and the three
// commands that renew it — on a hub, on the edge, on a hub with the file
// — which, run as printed, bring the edge back: diagnose is clean, the
// edge gets the recipients again, and mail from the internet reaches a
// mailbox on hub2 through it by direct trust.
func TestDiagnoseSeed004StaleEdgeSubscription(t *testing.T) {
	x := newEdgeOrg(t)
	edge := x.rebuildEdge(t) // same name and addresses, new keys

	var h *hub
	var f diagFinding
	for deadline := time.Now().Add(30 * time.Second); h == nil && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, c := range []*hub{x.h1, x.h2} {
			for _, g := range c.e.diagnose().Findings {
				if g.Check == "Q9" {
					h, f = c, g
				}
			}
		}
	}
	if h == nil {
		t.Fatal("diagnose found no stale edge subscription on either hub")
	}
	if !f.hasEvent(16091) || f.evidence("Edge") != "edge1" || len(f.Fix) != 3 {
		t.Fatalf("the Q9 finding: %+v", f)
	}
	if len(h.events(16091)) == 0 {
		t.Errorf("%s raised no 16091", h.name)
	}
	t.Logf("diagnose on %s: %s\nfix: %+v\n%s", h.name, f.Problem, f.Fix, f.Note)

	// The fix, as printed: the first command on the hub, the second on
	// the edge (it writes the subscription file), the third on the hub
	// with that file.
	h.e.runStep(f.Fix[0].Command)
	edge.e.runStep(f.Fix[1].Command)
	file := strings.TrimSpace(f.Fix[2].Command[strings.LastIndex(f.Fix[2].Command, " ")+1:])
	h.e.write(file, mustRead(t, filepath.Join(edge.e.work, file)))
	h.e.runStep(f.Fix[2].Command)

	edge.waitMailbox("bob@contoso.test", true, 30*time.Second)
	for _, c := range []*hub{x.h1, x.h2} {
		for _, g := range c.e.diagnose().Findings {
			if g.Check == "Q9" {
				t.Errorf("after the fix, diagnose on %s still finds %+v", c.name, g)
			}
		}
	}
	h.e.clean("after the new subscription")
	x.fromInternet(t, "bob@contoso.test", "after the new subscription")
	msgs := x.h2.waitMail("contoso.test", "bob", 1, 30*time.Second)
	if auth, sender, _, _ := hop(t, msgs[len(msgs)-1]); auth != "direct trust" || sender != "edge1" {
		t.Errorf("the hop from the rebuilt edge: %s from %s\n%s", auth, sender, msgs[len(msgs)-1])
	}
}
