// Package metrics is certrelay serve's Prometheus metrics (namespace
// certrelay), exposed in the text exposition format on /metrics by the
// server when `certrelay console set --metrics-bindings` names a binding
// (off by default).
//
// Counters of what happens in the process — TLS handshakes, rebuilds of
// the selection snapshot — are kept here; what the data directory holds
// — certificates and their expiry, STARTTLS per connector, the queue,
// the event log — is read from a Source at each scrape, so it is always
// the current state, including what other processes (the CLI) changed.
//
// The package knows nothing of certrelay's types: the server adapts its
// parts to Source. It is safe for concurrent use.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Certificate is a certificate in use, for the expiry gauge.
type Certificate struct {
	Thumbprint string
	Subject    string
	Services   string // "SMTP, IIS"
	Internal   bool   // this server's internal transport certificate
	NotAfter   time.Time
}

// Connector is a TLS-enabled receive connector and whether STARTTLS is
// offered on it now (a certificate serves its FQDN).
type Connector struct {
	Name    string
	Offered bool
}

// Event is how many events of one ID the log holds.
type Event struct {
	ID    int
	Name  string
	Count int
}

// Source reads the state the gauges show, at each scrape. Its methods
// are called concurrently with the server's work and must be safe for it;
// ctx ends with the scrape.
type Source interface {
	Certificates(ctx context.Context) []Certificate
	Connectors(ctx context.Context) []Connector
	// Queue returns the messages in the queue and when the oldest
	// arrived (zero when empty).
	Queue(ctx context.Context) (messages int, oldest time.Time, err error)
	Events(ctx context.Context) ([]Event, error)
}

// Handshake results.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
)

// Direct-trust events: authentication failed (1036 receiving, 2018
// sending) and certificate invalid (1037, 2019).
var directTrust = map[int]string{1036: "receive", 1037: "receive", 2018: "send", 2019: "send"}

// Metrics is one server's metrics.
type Metrics struct {
	reg        *prometheus.Registry
	handshakes *prometheus.CounterVec
	rebuilds   prometheus.Histogram
	probes     prometheus.Histogram
	mismatch   *prometheus.GaugeVec
	now        func() time.Time
}

// New returns the metrics of a server reading src; now is the clock
// (default time.Now).
func New(src Source, now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	m := &Metrics{reg: prometheus.NewRegistry(), now: now}
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "certrelay", Subsystem: "tls", Name: "handshakes_total",
		Help: "TLS handshakes by protocol, listener (receive connector, or console) and result (ok, failed).",
	}, []string{"protocol", "listener", "result"})
	m.rebuilds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "certrelay", Subsystem: "selection", Name: "rebuild_seconds",
		Help:    "Rebuilds of the published selection snapshot after a change (certificates, trust, keys): how long each took, from reading the change to publishing.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	m.probes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "certrelay", Subsystem: "probe", Name: "duration_seconds",
		Help:    "Self-probes of the server's own listeners (SPEC L2): connect, the protocol's STARTTLS, handshake; how long each took.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	})
	m.mismatch = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "certrelay", Subsystem: "probe", Name: "mismatch",
		Help: "1 when the last self-probe of a listener and name was served another certificate than selection intends (or none), 0 when it matched.",
	}, []string{"listener", "address", "fqdn"})
	m.reg.MustRegister(m.handshakes, m.rebuilds, m.probes, m.mismatch, &stateCollector{src: src, now: now},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handshake counts one TLS handshake (err nil: it succeeded).
func (m *Metrics) Handshake(protocol, listener string, err error) {
	r := ResultOK
	if err != nil {
		r = ResultFailed
	}
	m.handshakes.WithLabelValues(protocol, listener, r).Inc()
}

// Probed records one self-probe: how long it took and whether the
// certificate served was the intended one.
func (m *Metrics) Probed(listener, address, fqdn string, took time.Duration, match bool) {
	m.probes.Observe(took.Seconds())
	v := 1.0
	if match {
		v = 0
	}
	m.mismatch.WithLabelValues(listener, address, fqdn).Set(v)
}

// Rebuilt records one rebuild of the selection snapshot.
func (m *Metrics) Rebuilt(d time.Duration) { m.rebuilds.Observe(d.Seconds()) }

// Handler serves the metrics (GET /metrics; anything else is 404).
func (m *Metrics) Handler() http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Timeout: 10 * time.Second})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return mux
}

// Gatherer returns the registry, for tests.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

var (
	expiryDesc = prometheus.NewDesc("certrelay_certificate_expiry_seconds",
		"Seconds until the certificate's NotAfter (negative once expired), for every certificate enabled for a service and the internal transport certificate.",
		[]string{"thumbprint", "subject", "services", "internal"}, nil)
	startTLSDesc = prometheus.NewDesc("certrelay_starttls_offered",
		"1 when STARTTLS is advertised on the receive connector (a certificate serves its FQDN), 0 when not (event 12014).",
		[]string{"connector"}, nil)
	queueDesc = prometheus.NewDesc("certrelay_queue_messages",
		"Messages in the queue.", nil, nil)
	queueAgeDesc = prometheus.NewDesc("certrelay_queue_oldest_message_age_seconds",
		"Age of the oldest message in the queue (0 when it is empty).", nil, nil)
	eventsDesc = prometheus.NewDesc("certrelay_events_total",
		"Events in the event log, by ID and symbolic name (throttled events are counted as logged).",
		[]string{"id", "name"}, nil)
	directTrustDesc = prometheus.NewDesc("certrelay_direct_trust_failures_total",
		"Direct-trust failures as logged (events 1036 and 1037 receiving, 2018 and 2019 sending).",
		[]string{"direction"}, nil)
	scrapeErrDesc = prometheus.NewDesc("certrelay_scrape_errors_total",
		"Parts of the state that could not be read at this scrape.", []string{"part"}, nil)
)

// stateCollector reads the Source at each scrape.
type stateCollector struct {
	src Source
	now func() time.Time
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{expiryDesc, startTLSDesc, queueDesc, queueAgeDesc, eventsDesc, directTrustDesc, scrapeErrDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := c.now()
	for _, cert := range c.src.Certificates(ctx) {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, cert.NotAfter.Sub(now).Seconds(),
			cert.Thumbprint, cert.Subject, cert.Services, strconv.FormatBool(cert.Internal))
	}
	for _, conn := range c.src.Connectors(ctx) {
		v := 0.0
		if conn.Offered {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(startTLSDesc, prometheus.GaugeValue, v, conn.Name)
	}
	if n, oldest, err := c.src.Queue(ctx); err != nil {
		ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.CounterValue, 1, "queue")
	} else {
		age := 0.0
		if !oldest.IsZero() {
			age = max(now.Sub(oldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(n))
		ch <- prometheus.MustNewConstMetric(queueAgeDesc, prometheus.GaugeValue, age)
	}
	evs, err := c.src.Events(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.CounterValue, 1, "events")
		return
	}
	trust := map[string]int{"receive": 0, "send": 0}
	for _, e := range evs {
		ch <- prometheus.MustNewConstMetric(eventsDesc, prometheus.CounterValue, float64(e.Count), strconv.Itoa(e.ID), e.Name)
		if dir, ok := directTrust[e.ID]; ok {
			trust[dir] += e.Count
		}
	}
	for dir, n := range trust {
		ch <- prometheus.MustNewConstMetric(directTrustDesc, prometheus.CounterValue, float64(n), dir)
	}
}
