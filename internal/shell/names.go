package shell

import (
	"sort"
	"strings"

	"certrelay/internal/admin"
)

// aliases are PowerShell's own short names the seeds and administrators
// use.
var aliases = map[string]string{
	"fl": "Format-List", "ft": "Format-Table", "where": "Where-Object", "?": "Where-Object",
	"select": "Select-Object", "gcm": "Get-Command", "help": "Get-Help", "man": "Get-Help",
	"gc": "Get-Content", "cat": "Get-Content", "type": "Get-Content", "cls": "Clear-Host", "clear": "Clear-Host",
	"quit": "exit", "certutil.exe": "certutil",
	"echo": "Write-Output", "write": "Write-Output",
}

// canonical resolves an alias.
func canonical(name string) string {
	if a, ok := aliases[strings.ToLower(name)]; ok {
		return a
	}
	return name
}

// cmdletOps returns the operations of a cmdlet (its parameter sets), the
// default first.
func cmdletOps(name string) []*admin.Operation {
	var out []*admin.Operation
	for _, op := range admin.Operations() {
		if strings.EqualFold(op.Cmdlet, name) {
			out = append(out, op)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Set == "" && out[j].Set != "" })
	return out
}

// planned are the seeds' cmdlets no operation provides yet, with what
// will provide them. The registry is asked first: when an operation
// declares the cmdlet, it runs, and its entry here is no longer read.
var planned = map[string]string{}

func init() {
	// Exchange 2007's names of the UM service's cmdlets; certrelay declares
	// Exchange 2013's (issue 14).
	for _, c := range []string{"Get-UMServer", "Set-UMServer"} {
		planned[strings.ToLower(c)] = "certrelay names it " + strings.Replace(c, "UMServer", "UMService", 1) + " (Exchange 2013's name for the UM listener's settings): run that instead."
	}
}

// isFormatter reports whether a command only shows what it is given (it
// runs even on no input: ConvertTo-Json of an empty list writes []).
func isFormatter(name string) bool {
	switch strings.ToLower(canonical(name)) {
	case "format-list", "format-table", "convertto-json", "out-null", "out-string":
		return true
	}
	return false
}

// allCommands lists every command name the shell knows: the registry's
// cmdlets, the shell's own, and the aliases.
func allCommands() []string {
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if !seen[strings.ToLower(n)] {
			seen[strings.ToLower(n)] = true
			out = append(out, n)
		}
	}
	for _, op := range admin.Operations() {
		add(op.Cmdlet)
	}
	for _, b := range builtins {
		add(b.name)
	}
	for a := range aliases {
		add(a)
	}
	sort.Strings(out)
	return out
}

// suggest names the known command closest to name, if one is close.
func suggest(name string) string {
	best, bestD := "", 4
	lower := strings.ToLower(name)
	for _, c := range allCommands() {
		if d := distance(lower, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		for _, op := range admin.Operations() {
			if strings.Contains(strings.ToLower(op.Cmdlet), lower) || (len(lower) > 6 && strings.Contains(lower, strings.ToLower(strings.SplitN(op.Cmdlet, "-", 2)[1]))) {
				return op.Cmdlet
			}
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur := make([]int, len(rb)+1)
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(rb)]
}

// knownCommand reports whether name is a command the shell runs.
func knownCommand(name string) bool {
	name = canonical(name)
	if _, ok := builtins[strings.ToLower(name)]; ok {
		return true
	}
	return len(cmdletOps(name)) > 0
}

// repair reads two slips of the seeds' text as their authors meant them,
// saying so once each:
//
//   - "Get- ExchangeCertificate <thumbprint> | fl *" (seed 003): a
//     command name ending in '-' followed by the rest of a cmdlet's name;
//   - "Get-ExchangeCertificate | FL * Get-ReceiveConnector | FL name, …"
//     (seed 002, whose line breaks were lost): after a Format-List or
//     Format-Table, a bare word that names a cmdlet starts a new command.
//
// It returns the statement's pipelines, one or more.
func (s *Shell) repair(pl *Pipeline) []*Pipeline {
	for _, c := range pl.Commands {
		if strings.HasSuffix(c.Name, "-") && len(c.Elems) > 0 && c.Elems[0].Param == "" && c.Elems[0].Value.Kind == Word {
			joined := c.Name + c.Elems[0].Value.Text
			if len(cmdletOps(joined)) > 0 {
				s.noteOnce("join:"+joined, "note: '%s %s' is read as %s (a blank after the dash).", c.Name, c.Elems[0].Value.Text, joined)
				c.Name = joined
				c.Elems = c.Elems[1:]
			}
		}
	}
	var out []*Pipeline
	cur := &Pipeline{Text: pl.Text, Line: pl.Line}
	cmds := append([]*Command(nil), pl.Commands...)
	for len(cmds) > 0 {
		c := cmds[0]
		cmds = cmds[1:]
		split := -1
		if f := strings.ToLower(canonical(c.Name)); f == "format-list" || f == "format-table" {
			for i, el := range c.Elems {
				if el.Param == "" && el.Value.Kind == Word && strings.Contains(el.Value.Text, "-") && knownCommand(el.Value.Text) {
					split = i
					break
				}
				if el.Param == "" && el.Value.Kind == List {
					if last := el.Value.Items[len(el.Value.Items)-1]; last.Kind == Word && strings.Contains(last.Text, "-") && knownCommand(last.Text) {
						split = i
						break
					}
				}
			}
		}
		if split < 0 {
			cur.Commands = append(cur.Commands, c)
			continue
		}
		el := c.Elems[split]
		head := &Command{Name: c.Name, Pos: c.Pos, Elems: append([]*Elem(nil), c.Elems[:split]...)}
		var next *Command
		if el.Value.Kind == List { // "FL name, fqdn, objectClass Get-SendConnector" has no comma before the cmdlet
			items := el.Value.Items
			last := items[len(items)-1]
			head.Elems = append(head.Elems, &Elem{Value: &Value{Kind: List, Items: items[:len(items)-1], Pos: el.Value.Pos}, Pos: el.Pos})
			next = &Command{Name: last.Text, Pos: last.Pos, Elems: c.Elems[split+1:]}
		} else {
			next = &Command{Name: el.Value.Text, Pos: el.Pos, Elems: c.Elems[split+1:]}
		}
		s.noteOnce("split", "note: %s after %s's properties starts a new command (the line reads as several commands run together; separate them with ';' or line breaks).", next.Name, c.Name)
		cur.Commands = append(cur.Commands, head)
		out = append(out, cur)
		cur = &Pipeline{Text: pl.Text, Line: pl.Line}
		cmds = append([]*Command{next}, cmds...)
	}
	return append(out, cur)
}
