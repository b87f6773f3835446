// goyamux: a yamux peer built on Debian's hashicorp/yamux (2019 snapshot), for virga's
// interop tests and benchmarks.  Same command-line contract as `python -m virga`:
//
//	goyamux serve-echo  --listen ADDR  [--backlog N] [--no-accept] [--goaway-after-accept]
//	                    [--open-after-echo] [--read-delay-ms D] [--chunk C]
//	goyamux echo-client --connect ADDR --streams N --bytes M [--read-delay-ms D] [--chunk C]
//	                    [--goaway-first] [--open-after-echo]
//	goyamux ping        --connect ADDR [--count K]
//
// ADDR is unix:PATH or tcp:HOST:PORT.  Echo framing: the opener sends an 8-byte big-endian
// length N and N bytes; the acceptor echoes exactly N bytes and closes the stream.  The
// explicit length matters: this yamux snapshot loses data when an io.Copy echo keeps
// writing after the peer's FIN.
//
// Output is machine-readable, one event per line on stdout ("listening ...", "ok ...",
// "stream-error id=3 err=connection reset", "open err=..."); yamux's own log goes to stderr.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

type options struct {
	listen, connect   string
	streams           int
	bytes             int64
	count             int
	backlog           int
	noAccept          bool
	goAwayAfterAccept bool
	goAwayFirst       bool
	openAfterEcho     bool
	readDelay         time.Duration
	chunk             int
}

var out sync.Mutex

// say prints one line on stdout; lines from concurrent goroutines never interleave.
func say(format string, args ...interface{}) {
	out.Lock()
	defer out.Unlock()
	fmt.Printf(format+"\n", args...)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "goyamux: "+format+"\n", args...)
	os.Exit(1)
}

func splitAddr(addr string) (network, target string) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		return "unix", addr[len("unix:"):]
	case strings.HasPrefix(addr, "tcp:"):
		return "tcp", addr[len("tcp:"):]
	}
	fail("bad address %q: expected unix:PATH or tcp:HOST:PORT", addr)
	return "", ""
}

func config(o *options) *yamux.Config {
	c := yamux.DefaultConfig()
	if o.backlog > 0 {
		c.AcceptBacklog = o.backlog
	}
	return c
}

// slowReader reads at most chunk bytes per Read and sleeps after each: a slow consumer.
type slowReader struct {
	r     io.Reader
	chunk int
	delay time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.chunk > 0 && len(p) > s.chunk {
		p = p[:s.chunk]
	}
	n, err := s.r.Read(p)
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	return n, err
}

func reader(o *options, r io.Reader) io.Reader {
	if o.readDelay > 0 || o.chunk > 0 {
		return &slowReader{r: r, chunk: o.chunk, delay: o.readDelay}
	}
	return r
}

// tryOpen opens one more stream and reports the result (used after a GoAway).
func tryOpen(session *yamux.Session) {
	s, err := session.OpenStream()
	if err != nil {
		remote := err == yamux.ErrRemoteGoAway
		say("open err=%q remote_goaway=%v", err.Error(), remote)
		return
	}
	say("open ok id=%d", s.StreamID())
	s.Close()
}

// echo serves one accepted stream: length, then exactly that many bytes back.
func echo(o *options, session *yamux.Session, s *yamux.Stream) {
	defer s.Close()
	in := reader(o, s)
	var hdr [8]byte
	if _, err := io.ReadFull(in, hdr[:]); err != nil {
		say("stream-error id=%d err=%q", s.StreamID(), err.Error())
		return
	}
	n := int64(binary.BigEndian.Uint64(hdr[:]))
	if copied, err := io.CopyN(s, in, n); err != nil {
		say("stream-error id=%d err=%q echoed=%d", s.StreamID(), err.Error(), copied)
		return
	}
	say("echoed id=%d bytes=%d", s.StreamID(), n)
	if o.openAfterEcho {
		// Wait for the peer's FIN: the peer sends its GoAway before it, so by now it is seen.
		io.Copy(io.Discard, s)
		tryOpen(session)
	}
}

func serveSession(o *options, conn net.Conn) {
	session, err := yamux.Server(conn, config(o))
	if err != nil {
		fail("yamux server: %v", err)
	}
	defer session.Close()
	if o.noAccept {
		<-session.CloseChan()
		return
	}
	first := true
	for {
		s, err := session.AcceptStream()
		if err != nil {
			return
		}
		if first && o.goAwayAfterAccept {
			if err := session.GoAway(); err != nil {
				say("goaway err=%q", err.Error())
			} else {
				say("goaway sent")
			}
		}
		first = false
		go echo(o, session, s)
	}
}

func serveEcho(o *options) {
	network, target := splitAddr(o.listen)
	if network == "unix" {
		os.Remove(target)
	}
	ln, err := net.Listen(network, target)
	if err != nil {
		fail("listen %s: %v", o.listen, err)
	}
	say("listening %s", o.listen)
	for {
		conn, err := ln.Accept()
		if err != nil {
			fail("accept: %v", err)
		}
		go serveSession(o, conn)
	}
}

func dial(o *options) *yamux.Session {
	network, target := splitAddr(o.connect)
	conn, err := net.DialTimeout(network, target, 10*time.Second)
	if err != nil {
		fail("connect %s: %v", o.connect, err)
	}
	session, err := yamux.Client(conn, config(o))
	if err != nil {
		fail("yamux client: %v", err)
	}
	return session
}

// echoOne runs one client stream: writes length + payload while reading the echo back.
func echoOne(o *options, session *yamux.Session, payload []byte) error {
	s, err := session.OpenStream()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer s.Close()
	werr := make(chan error, 1)
	go func() {
		var hdr [8]byte
		binary.BigEndian.PutUint64(hdr[:], uint64(len(payload)))
		if _, err := s.Write(hdr[:]); err != nil {
			werr <- err
			return
		}
		_, err := s.Write(payload)
		werr <- err
	}()
	h := sha256.New()
	if _, err := io.CopyN(h, reader(o, s), int64(len(payload))); err != nil {
		return fmt.Errorf("stream %d read: %w", s.StreamID(), err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("stream %d write: %w", s.StreamID(), err)
	}
	want := sha256.Sum256(payload)
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("stream %d: echoed bytes differ (SHA-256 mismatch)", s.StreamID())
	}
	if o.openAfterEcho {
		// The server sent its GoAway before the echo, so it has been processed by now.
		io.Copy(io.Discard, s)
		tryOpen(session)
	}
	return nil
}

func echoClient(o *options) {
	session := dial(o)
	defer session.Close()
	if o.goAwayFirst {
		if err := session.GoAway(); err != nil {
			fail("goaway: %v", err)
		}
		say("goaway sent")
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	payloads := make([][]byte, o.streams)
	for i := range payloads {
		payloads[i] = make([]byte, o.bytes)
		rng.Read(payloads[i])
	}
	errs := make(chan error, o.streams)
	start := time.Now()
	for _, p := range payloads {
		go func(p []byte) { errs <- echoOne(o, session, p) }(p)
	}
	var failed []string
	for range payloads {
		if err := <-errs; err != nil {
			failed = append(failed, err.Error())
		}
	}
	elapsed := time.Since(start).Seconds()
	for _, f := range failed {
		say("error %s", f)
	}
	if len(failed) > 0 {
		fail("%d of %d streams failed: %s", len(failed), o.streams, failed[0])
	}
	total := float64(o.bytes) * float64(o.streams)
	say("ok streams=%d bytes=%d MB/s=%.1f", o.streams, o.bytes, total/elapsed/1e6)
}

func ping(o *options) {
	session := dial(o)
	defer session.Close()
	for i := 0; i < o.count; i++ {
		rtt, err := session.Ping()
		if err != nil {
			fail("ping %d: %v", i, err)
		}
		say("rtt_us=%d", rtt.Microseconds())
	}
	say("ok pings=%d", o.count)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: goyamux serve-echo|echo-client|ping [flags]")
	}
	mode := os.Args[1]
	o := &options{}
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	fs.StringVar(&o.listen, "listen", "", "address to listen on (serve-echo)")
	fs.StringVar(&o.connect, "connect", "", "address to connect to")
	fs.IntVar(&o.streams, "streams", 1, "streams opened at once (echo-client)")
	fs.Int64Var(&o.bytes, "bytes", 1<<20, "bytes echoed per stream (echo-client)")
	fs.IntVar(&o.count, "count", 3, "pings to send (ping)")
	fs.IntVar(&o.backlog, "backlog", 0, "AcceptBacklog (default 256)")
	fs.BoolVar(&o.noAccept, "no-accept", false, "never accept streams (backlog overflow test)")
	fs.BoolVar(&o.goAwayAfterAccept, "goaway-after-accept", false, "send GoAway after the first accept")
	fs.BoolVar(&o.goAwayFirst, "goaway-first", false, "send GoAway before opening streams")
	fs.BoolVar(&o.openAfterEcho, "open-after-echo", false,
		"after an echo, wait for the stream's end and try to open a stream")
	readDelayMs := fs.Int("read-delay-ms", 0, "sleep after every read (slow reader)")
	fs.IntVar(&o.chunk, "chunk", 0, "read at most this many bytes at a time")
	fs.Parse(os.Args[2:])
	o.readDelay = time.Duration(*readDelayMs) * time.Millisecond

	switch mode {
	case "serve-echo":
		if o.listen == "" {
			fail("serve-echo needs --listen ADDR")
		}
		serveEcho(o)
	case "echo-client", "ping":
		if o.connect == "" {
			fail("%s needs --connect ADDR", mode)
		}
		if mode == "ping" {
			ping(o)
		} else {
			echoClient(o)
		}
	default:
		fail("unknown mode %q: expected serve-echo, echo-client or ping", mode)
	}
}
