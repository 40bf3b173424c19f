package shell

import (
	"context"
	"sort"
	"strings"
	"unicode"

	"certrelay/internal/admin"
)

// completer completes, on Tab, the name of a cmdlet where a command
// starts, a parameter's name after '-', the values of a parameter that
// has few (-Services SMTP, POP …), and thumbprints of the store where a
// thumbprint goes. Everything but thumbprints comes from the registry.
type completer struct {
	s   *Shell
	ctx context.Context
}

// Do implements readline.AutoCompleter: the candidates' remaining text
// after what was typed, and the length of what was typed.
func (c *completer) Do(line []rune, pos int) ([][]rune, int) {
	cands, word := c.Complete(string(line[:pos]))
	out := make([][]rune, 0, len(cands))
	for _, cand := range cands {
		out = append(out, []rune(cand[len(word):]))
	}
	return out, len([]rune(word))
}

// Complete returns the completions of the last word of before (each the
// whole word, followed by a blank when it is complete) and that word.
func (c *completer) Complete(before string) ([]string, string) {
	start := strings.LastIndexFunc(before, func(r rune) bool {
		return unicode.IsSpace(r) || r == '|' || r == ';' || r == '(' || r == '{' || r == ',' || r == ':'
	}) + 1
	word := before[start:]
	// The command this word belongs to, and the words before it.
	seg := before[:start]
	cut := strings.LastIndexAny(seg, "|;({")
	cmdWords := strings.Fields(seg[cut+1:])
	var cands []string
	switch {
	case len(cmdWords) == 0:
		for _, n := range allCommands() {
			if hasPrefixFold(n, word) {
				cands = append(cands, n+" ")
			}
		}
	case word != "" && isDash([]rune(word)[0]):
		dash := len(string([]rune(word)[0]))
		typed := word[dash:]
		for _, n := range c.params(cmdWords[0]) {
			if hasPrefixFold(n, typed) {
				cands = append(cands, word+n[len(typed):]+" ")
			}
		}
	default:
		prev := ""
		if len(cmdWords) > 1 || strings.HasSuffix(strings.TrimSpace(seg), ",") || strings.HasSuffix(seg, ":") {
			prev = lastParam(seg)
		}
		cands = c.values(cmdWords[0], prev, word, len(cmdWords) == 1)
	}
	sort.Strings(cands)
	return cands, word
}

// params are the parameter names a command takes.
func (c *completer) params(cmd string) []string {
	cmd = canonical(cmd)
	if ops := cmdletOps(cmd); len(ops) > 0 {
		seen := map[string]bool{}
		var out []string
		for _, op := range ops {
			for _, n := range paramNames(op) {
				if p := op.Param(n); p != nil && p.Hidden && n != op.Set {
					continue
				}
				if !seen[n] {
					seen[n] = true
					out = append(out, n)
				}
			}
		}
		return out
	}
	switch strings.ToLower(cmd) {
	case "get-help":
		return []string{"Name", "Full", "Detailed", "Examples", "Parameter"}
	case "get-command":
		return []string{"Name", "Verb", "Noun"}
	case "format-list", "format-table", "select-object":
		return []string{"Property"}
	case "certutil":
		return []string{"verify", "urlfetch"}
	case "convertto-json":
		return []string{"Compress", "AsArray", "Depth"}
	}
	return nil
}

// values completes a value: of an enumerated parameter, a thumbprint, or
// a cmdlet's name after Get-Help.
func (c *completer) values(cmd, param, word string, firstArg bool) []string {
	cmd = canonical(cmd)
	var out []string
	if strings.EqualFold(cmd, "Get-Help") || strings.EqualFold(cmd, "Get-Command") {
		for _, n := range allCommands() {
			if hasPrefixFold(n, word) {
				out = append(out, n+" ")
			}
		}
		return out
	}
	ops := cmdletOps(cmd)
	if len(ops) == 0 {
		return nil
	}
	var p *admin.Param
	for _, op := range ops {
		if param != "" {
			if q := op.Param(param); q != nil {
				p = q
				break
			}
		} else if firstArg {
			if pos := op.Positional(); len(pos) > 0 {
				p = pos[0]
				break
			}
		}
	}
	if p == nil {
		return nil
	}
	for _, v := range p.Type.Values {
		if hasPrefixFold(v, word) {
			out = append(out, v)
		}
	}
	if (p.Name == "Thumbprint" || p.Name == "Instance") && c.s.Admin != nil {
		certs, err := c.s.Admin.ListCertificates(c.ctx, admin.ListOptions{})
		if err == nil {
			for _, cert := range certs {
				if hasPrefixFold(cert.Thumbprint, word) {
					out = append(out, cert.Thumbprint+" ")
				}
			}
		}
	}
	return out
}

// lastParam is the name of the last -Parameter in s.
func lastParam(s string) string {
	f := strings.Fields(strings.ReplaceAll(s, ":", " "))
	for i := len(f) - 1; i >= 0; i-- {
		if strings.HasPrefix(f[i], "-") && len(f[i]) > 1 {
			return strings.TrimLeft(f[i], "-")
		}
		if !strings.HasSuffix(f[i], ",") && i < len(f)-1 {
			return ""
		}
	}
	return ""
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
