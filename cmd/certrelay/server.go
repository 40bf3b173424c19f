package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"certrelay/internal/admin"
	"certrelay/internal/server"
	"certrelay/internal/web"
)

// printSetup says what setup did.
func printSetup(a *app, res admin.SetupResult) {
	w := a.stdout
	if res.AlreadyDone {
		fmt.Fprintf(w, "Server %s (%s, FQDN %s) was already set up in %s.\n", res.Server.Name, res.Server.Role, res.Server.Fqdn, a.dataDir)
		return
	}
	fmt.Fprintf(w, "Set up server %s as %s with FQDN %s in %s.\n", res.Server.Name, res.Server.Role, res.Server.Fqdn, a.dataDir)
	if res.Certificate != nil {
		how := "Made"
		if !res.Created {
			how = "Using the existing"
		}
		fmt.Fprintf(w, "%s internal transport certificate %s (%v), valid until %s.\n", how, res.Certificate.Thumbprint,
			res.Certificate.CertificateDomains, formatTime(*res.Certificate.NotAfter))
	}
	if res.Connector != nil {
		fmt.Fprintf(w, "Made receive connector %q on %s.\n", res.Connector.Name, strings.Join(res.Connector.Bindings, ", "))
	}
}

func (a *app) serveCommand() *cobra.Command {
	var setup admin.SetupOptions
	var debug bool
	var renewInterval, probeInterval, activationInterval time.Duration
	var cpuprofile, memprofile, passwordFile, caFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server (runs setup on first start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			ctx := cmd.Context()
			if cpuprofile != "" {
				f, err := os.Create(cpuprofile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if memprofile != "" {
				stop := heapProfileOnSignal(memprofile, logger)
				defer stop()
			}
			if passwordFile != "" {
				pw, err := a.readSecret(passwordFile)
				if err != nil {
					return err
				}
				setup.BindPassword = pw
			}
			if caFile != "" {
				ca, err := readInput(a, caFile)
				if err != nil {
					return err
				}
				setup.DirectoryCA = ca
			}
			// Setup runs through the admin layer (M9); the server then
			// opens the data directory itself. The admin layer stays open
			// for the HTTPS console and API (internal/web), the face the
			// server runs on its console bindings.
			ad, err := admin.Open(ctx, admin.Options{DataDir: a.dataDir, Logger: logger})
			if err != nil {
				return err
			}
			defer ad.Close()
			res, err := ad.Setup(ctx, setup)
			if err != nil {
				return err
			}
			if !res.AlreadyDone {
				logger.Info("setup complete", "server", res.Server.Name, "role", res.Server.Role, "fqdn", res.Server.Fqdn,
					"internal_certificate", res.Server.InternalTransportCertificateThumbprint)
			}
			console, err := web.New(web.Options{Admin: ad, Logger: logger})
			if err != nil {
				return err
			}
			// Certificates renew themselves (SPEC L1): the admin layer
			// checks at start and every hour, each renewal one
			// transaction, seen by the server through the change log.
			go ad.RunRenewals(ctx, renewInterval, logger)
			go ad.RunActivations(ctx, activationInterval, logger) // staged certificates scheduled with cert activate --at
			return server.Run(ctx, server.Options{DataDir: a.dataDir, Logger: logger, Console: console, ProbeInterval: probeInterval})
		},
	}
	cmd.Flags().StringVar(&setup.Role, "role", "", "role for the first start: hub (the default) or edge")
	cmd.Flags().StringVar(&setup.Fqdn, "fqdn", "", "FQDN for the first start (default: the host name)")
	cmd.Flags().StringVar(&setup.Name, "name", "", "server name for the first start, one DNS label (default: the host name's first label)")
	cmd.Flags().StringVar(&setup.Directory, "directory", "", "first start: join this organisation's directory, ldap://HOST:PORT/BASE-DN or ldaps://…")
	cmd.Flags().StringVar(&setup.BindDN, "bind-dn", "", "first start: the DN to bind to the directory as")
	cmd.Flags().StringVar(&passwordFile, "bind-password-file", "", "first start: file holding the bind DN's password (- for standard input)")
	cmd.Flags().StringVar(&caFile, "directory-ca", "", "first start: file holding the CA certificate (PEM) of the directory's TLS certificate; with ldap://, StartTLS")
	cmd.Flags().DurationVar(&renewInterval, "renew-check", time.Hour, "how often to look for certificates due for renewal (ACME at two thirds of their life, the internal one 30 days before expiry), the first time a minute after start; 0: never")
	cmd.Flags().DurationVar(&activationInterval, "activation-check", 30*time.Second, "how often to activate staged certificates whose time (cert activate --at) has come")
	cmd.Flags().DurationVar(&probeInterval, "probe-interval", server.DefaultProbeInterval, "how often the server connects to its own listeners and compares the certificate served with the one selection intends (negative: never)")
	cmd.Flags().BoolVar(&debug, "debug", false, "log protocol details and every certificate selection")
	cmd.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile to this file until the server stops (for docs/PERFORMANCE.md)")
	_ = cmd.Flags().MarkHidden("cpuprofile")
	cmd.Flags().StringVar(&memprofile, "memprofile", "", "on SIGUSR1, collect garbage and write a heap profile to this file (for docs/performance)")
	_ = cmd.Flags().MarkHidden("memprofile")
	return cmd
}

// heapProfileOnSignal writes a heap profile to path, after a garbage
// collection, each time the process gets SIGUSR1, until stop is called.
// The file is replaced by rename, so a reader never sees half of one.
func heapProfileOnSignal(path string, logger *slog.Logger) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ch:
				runtime.GC()
				tmp := path + ".tmp"
				f, err := os.Create(tmp)
				if err == nil {
					err = pprof.Lookup("heap").WriteTo(f, 0)
					if cerr := f.Close(); err == nil {
						err = cerr
					}
				}
				if err == nil {
					err = os.Rename(tmp, path)
				}
				if err != nil {
					logger.Warn("heap profile not written", "file", path, "err", err)
				} else {
					logger.Info("heap profile written", "file", path, "goroutines", runtime.NumGoroutine())
				}
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}
