// Package bench holds certrelay's benchmarks and reliability harness,
// side by side with Debian's Postfix. Nothing here runs in `make test`:
//
//	make bench        # loads against certrelay and Postfix, Go benchmarks,
//	                  # hot swap under load; writes docs/PERFORMANCE.md
//	make crashtest    # SIGKILL certrelay under load, TRIALS times; fails on a lost message
//
// Both are Go tests behind the build tag "bench" (TestBench, TestCrash)
// so they can reuse internal/testpki (Postfix in a temporary directory,
// free ports) and clean up after themselves. The crypto/tls handshake
// floor, BenchmarkTLSHandshake, has no tag:
//
//	go test -run '^$' -bench TLSHandshake ./test/bench/
//
// Loads are driven by cmd/smtpload; timings are reported, never asserted
// (ARCHITECTURE.md, tests layer 5).
package bench
