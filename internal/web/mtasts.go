package web

import (
	"net"
	"net/http"
	"strings"
)

// mtaSTSPolicy serves the MTA-STS policy (RFC 8461 3.2) to senders, with
// no login: only for the host mta-sts.DOMAIN of an accepted domain, and
// only while a policy is published (certrelay mtasts set); otherwise 404.
func (h *Handler) mtaSTSPolicy(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	domain, ok := strings.CutPrefix(strings.TrimSuffix(host, "."), "mta-sts.")
	p, err := h.a.GetMTASTSPolicy(r.Context())
	if !ok || err != nil || p.Mode == "" || !served(p.URLs, domain) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(p.Policy))
}

// served reports whether domain is among the policy's URLs (its accepted
// domains).
func served(urls []string, domain string) bool {
	for _, u := range urls {
		if u == "https://mta-sts."+domain+"/.well-known/mta-sts.txt" {
			return true
		}
	}
	return false
}
