// Copyright: crdb.tls contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

// cockroach is a TEST FIXTURE standing in for CockroachDB. This is NOT
// CockroachDB: no SQL, no cluster, no store. The crdb.tls collection cannot
// install a real cockroach binary where it is tested, so this small Go
// program (standard library only) takes its place: it reads the certs dir as
// a node does (package certsdir), serves mutual TLS on the SQL/RPC port and
// HTTPS on the DB Console port with Go's crypto/tls, and reloads its
// certificates on SIGHUP with CockroachDB's rules. See
// tests/fixtures/standin/README.md.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"crdbtls.invalid/gopeer/certsdir"
)

const fixture = "crdb.tls test stand-in for CockroachDB (TEST FIXTURE, not CockroachDB; Go crypto/tls)"

const ioTimeout = 10 * time.Second

// ------------------------------------------------------------------ logging

type logger struct {
	mu sync.Mutex
	f  *os.File
}

func (l *logger) printf(level byte, format string, args ...interface{}) {
	now := time.Now()
	line := fmt.Sprintf("%c%s %d [standin] %s\n", level, now.Format("060102 15:04:05.000000"), os.Getpid(),
		fmt.Sprintf(format, args...))
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.WriteString(line)
	_ = l.f.Sync()
}

func (l *logger) info(format string, args ...interface{}) { l.printf('I', format, args...) }
func (l *logger) warn(format string, args ...interface{}) { l.printf('W', format, args...) }
func (l *logger) errf(format string, args ...interface{}) { l.printf('E', format, args...) }

// ------------------------------------------------------------------ flags

type options struct {
	command, certsDir, listenAddr, httpAddr, logFile, pidFile, processName string
	tenantID                                                               uint64
	ignored                                                                []string
}

// parseArgs reads `start` flags as --flag value or --flag=value; flags the
// stand-in does not know are kept (and logged) and ignored, like --join.
func parseArgs(args []string) (*options, error) {
	o := &options{certsDir: filepath.Join(os.Getenv("HOME"), ".cockroach-certs"), listenAddr: ":26257",
		httpAddr: ":8080", processName: "cockroach"}
	if len(args) == 0 {
		return nil, errors.New("usage: cockroach start|start-single-node|version [flags]")
	}
	o.command = args[0]
	known := map[string]*string{"--certs-dir": &o.certsDir, "--listen-addr": &o.listenAddr,
		"--http-addr": &o.httpAddr, "--log-file": &o.logFile, "--pid-file": &o.pidFile,
		"--process-name": &o.processName}
	var collections, tenant string
	known["--collections-path"] = &collections
	known["--tenant-id"] = &tenant
	for i := 1; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "--") {
			o.ignored = append(o.ignored, arg)
			continue
		}
		name, value, hasValue := strings.Cut(arg, "=")
		target, ok := known[name]
		if !ok {
			o.ignored = append(o.ignored, arg)
			if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				o.ignored = append(o.ignored, args[i])
			}
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("%s needs a value", name)
			}
			i++
			value = args[i]
		}
		*target = value
	}
	if collections != "" {
		o.ignored = append(o.ignored, "--collections-path="+collections)
	}
	if tenant != "" {
		id, err := strconv.ParseUint(tenant, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--tenant-id %q: %v", tenant, err)
		}
		o.tenantID = id
	}
	return o, nil
}

// ------------------------------------------------------------------ the node

type node struct {
	opts *options
	log  *logger
	cert certsdir.Options

	mu             sync.Mutex
	set            *certsdir.Set
	reloads        int
	reloadFailures int
	lastSenderUID  *int
	lastSenderPID  *int
	lastError      *string
	sqlAddr        string
	httpAddr       string
}

func (n *node) current() *certsdir.Set {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.set
}

func fingerprint(ci *certsdir.CertInfo) interface{} {
	if ci == nil || len(ci.Parsed) == 0 {
		return nil
	}
	sum := sha256.Sum256(ci.Parsed[0].Raw)
	return hex.EncodeToString(sum[:])
}

func describe(s *certsdir.Set) string {
	clientCA := "none"
	if ca, err := s.ClientCACert(); err == nil {
		clientCA = ca.Filename
	}
	ui := "node.crt"
	if s.UI != nil {
		ui = s.UI.Filename
	}
	return fmt.Sprintf("sql=node.crt (clients verified by %s) http=%s outgoing=%s", clientCA, ui, outgoing(s))
}

func outgoing(s *certsdir.Set) string {
	if s.NodeClient != nil {
		return s.NodeClient.Filename
	}
	return "node.crt"
}

func (n *node) logSet(s *certsdir.Set) {
	for _, sk := range s.Skipped {
		n.log.warn("bad filename %s: %s", filepath.Join(s.Dir, sk.Filename), sk.Reason)
	}
	for _, ci := range s.All {
		if ci.Err != nil {
			n.log.warn("problem with %s: %v", ci.Filename, ci.Err)
		}
	}
}

// load is the start: the set must load, and the SQL/RPC and DB Console
// server configs must build (a node does not start otherwise).
func (n *node) load() error {
	s, err := certsdir.Manage(n.opts.certsDir, n.cert, nil, n.opts.tenantID)
	if err != nil {
		return err
	}
	n.logSet(s)
	if _, err := s.ServerConfig(); err != nil {
		return err
	}
	if _, err := s.UIServerConfig(); err != nil {
		return err
	}
	n.mu.Lock()
	n.set = s
	n.mu.Unlock()
	n.log.info("loaded certificates from %s: %s", n.opts.certsDir, describe(s))
	return nil
}

// reload is CockroachDB's SIGHUP: refused (old set kept) when a guarded
// certificate that was valid would be lost; otherwise swapped in, broken new
// files included (they fail at the next handshake).
func (n *node) reload(pid, uid int) {
	n.mu.Lock()
	n.lastSenderUID, n.lastSenderPID = &uid, &pid
	previous := n.set
	n.mu.Unlock()
	s, err := certsdir.Manage(n.opts.certsDir, n.cert, previous, n.opts.tenantID)
	if err != nil {
		msg := err.Error()
		n.mu.Lock()
		n.reloadFailures++
		n.lastError = &msg
		n.mu.Unlock()
		n.log.warn("certificate reload failed, keeping previous certificates: %s", msg)
		return
	}
	n.logSet(s)
	n.mu.Lock()
	n.set = s
	n.reloads++
	n.lastError = nil
	n.mu.Unlock()
	n.log.info("certificate reload succeeded: %s", describe(s))
}

func (n *node) status(served *certsdir.Set) map[string]interface{} {
	s := n.current()
	n.mu.Lock()
	st := map[string]interface{}{
		"reloads": n.reloads, "reload_failures": n.reloadFailures,
		"last_reload_sender_uid": n.lastSenderUID, "last_reload_sender_pid": n.lastSenderPID,
		"last_reload_error": n.lastError, "sql_addr": n.sqlAddr, "http_addr": n.httpAddr,
	}
	n.mu.Unlock()
	servedUI, _ := served.UICert()
	clientCA := interface{}(nil)
	if ca, err := s.ClientCACert(); err == nil {
		clientCA = ca.Filename
	}
	users := []string{}
	for name, ci := range s.Clients {
		if ci.Err == nil {
			users = append(users, name)
		}
	}
	sort.Strings(users)
	skipped := []map[string]string{}
	for _, sk := range s.Skipped {
		skipped = append(skipped, map[string]string{"file": sk.Filename, "reason": sk.Reason})
	}
	outgoingCert, _ := s.NodeClientCert()
	servedFile := interface{}(nil)
	if servedUI != nil {
		servedFile = servedUI.Filename
	}
	for k, v := range map[string]interface{}{
		"fixture": fixture, "pid": os.Getpid(), "certs_dir": n.opts.certsDir,
		"served_cert_sha256": fingerprint(servedUI), "served_cert_file": servedFile,
		"node_cert_sha256": fingerprint(s.Node), "ui_cert_sha256": fingerprint(s.UI),
		"client_ca_file": clientCA, "outgoing_identity_file": outgoing(s),
		"outgoing_identity_sha256": fingerprint(outgoingCert), "client_users": users, "skipped": skipped,
		"key_permission_check": !n.cert.SkipPermissionCheck, "tenant_id": n.opts.tenantID,
	} {
		st[k] = v
	}
	return st
}

// ------------------------------------------------------------------ SQL/RPC port

// sqlConn: TLS with the node's server config, a client cert required and
// verified against the client CA pool; then one line and close.
func (n *node) sqlConn(conn net.Conn) {
	defer conn.Close()
	addr := conn.RemoteAddr().String()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	s := n.current()
	cfg, err := s.ServerConfig()
	if err != nil {
		n.log.warn("sql: client %s: cannot serve: %v", addr, err)
		return
	}
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	tc := tls.Server(conn, cfg)
	if err := tc.Handshake(); err != nil {
		n.log.warn("sql: client %s: TLS handshake failed: %v", addr, err)
		return
	}
	peer := tc.ConnectionState().PeerCertificates[0]
	cn := strings.NewReplacer("\n", "\\n", " ", "\\x20").Replace(peer.Subject.CommonName)
	_, err = fmt.Fprintf(tc, "OK cn=%s server_sha256=%s\n", cn, fingerprint(s.Node))
	if err != nil {
		n.log.warn("sql: client %s cn=%s: write failed: %v", addr, cn, err)
		return
	}
	n.log.info("sql: client %s cn=%s: TLS handshake succeeded", addr, cn)
	_ = tc.CloseWrite()
}

func (n *node) serveSQL(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			n.log.warn("sql: accept failed: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go n.sqlConn(conn)
	}
}

// ------------------------------------------------------------------ DB Console port

type setKey struct{}

// servedConn is a TLS connection with the set it is served with.
type servedConn struct {
	*tls.Conn
	set *certsdir.Set
}

type consoleListener struct {
	net.Listener
	n *node
}

func (l consoleListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := l.n.current()
		cfg, err := s.UIServerConfig()
		if err != nil {
			l.n.log.warn("http: client %s: cannot serve the DB Console: %v", conn.RemoteAddr(), err)
			conn.Close()
			continue
		}
		return servedConn{Conn: tls.Server(conn, cfg), set: s}, nil
	}
}

func (n *node) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintln(w, "not found (this is a test stand-in: only / and /health exist)")
			return
		}
		served, _ := r.Context().Value(setKey{}).(*certsdir.Set)
		if served == nil {
			served = n.current()
		}
		body, _ := json.MarshalIndent(n.status(served), "", "  ")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "close")
		_, _ = w.Write(append(body, '\n'))
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Connection", "close")
		fmt.Fprint(w, "ok\n")
	})
	return mux
}

// ------------------------------------------------------------------ main

func writePidFile(path string) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func removePidFile(path string) {
	data, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(path)
	}
}

// reexecAs runs this program again under another process name (the kernel
// names a process after the file it executes): a symlink NAME -> this
// executable in a temp dir, removed by the new process once it runs.
func reexecAs(name string) error {
	if len(name) > 15 || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("--process-name %q: 1 to 15 bytes, no slash", name)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "crdb-standin-")
	if err != nil {
		return err
	}
	link := filepath.Join(dir, name)
	if err := os.Symlink(self, link); err != nil {
		return err
	}
	env := append(os.Environ(), "CRDB_STANDIN_REEXEC_DIR="+dir)
	return syscall.Exec(link, append([]string{link}, os.Args[1:]...), env)
}

func listen(addr, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: cannot listen: %v", flag, addr, err)
	}
	return ln, nil
}

func main() {
	os.Exit(run())
}

func run() int {
	if err := blockSignals(); err != nil {
		fmt.Fprintln(os.Stderr, "ERROR: cannot block signals:", err)
		return 1
	}
	if dir := os.Getenv("CRDB_STANDIN_REEXEC_DIR"); dir != "" {
		os.Unsetenv("CRDB_STANDIN_REEXEC_DIR")
		_ = os.RemoveAll(dir)
	}
	opts, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		return 2
	}
	switch opts.command {
	case "version":
		fmt.Println(fixture)
		fmt.Println("Build Tag:        crdb.tls-standin-go (this is not a CockroachDB build)")
		return 0
	case "start", "start-single-node":
	default:
		fmt.Fprintf(os.Stderr, "ERROR: unknown command %q: this stand-in has only start, start-single-node, version\n",
			opts.command)
		return 2
	}
	if filepath.Base(os.Args[0]) != opts.processName {
		if err := reexecAs(opts.processName); err != nil {
			fmt.Fprintln(os.Stderr, "ERROR:", err)
			return 2
		}
	}
	out := os.Stderr
	if opts.logFile != "" {
		if out, err = os.OpenFile(opts.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err != nil {
			fmt.Fprintln(os.Stderr, "ERROR:", err)
			return 1
		}
	}
	log := &logger{f: out}
	fail := func(format string, args ...interface{}) int {
		msg := fmt.Sprintf(format, args...)
		log.errf("%s", msg)
		if opts.logFile != "" {
			fmt.Fprintln(os.Stderr, "ERROR: "+msg)
		}
		return 1
	}
	log.info("%s starting, pid %d, uid %d, gid %d", fixture, os.Getpid(), os.Getuid(), os.Getgid())
	if len(opts.ignored) > 0 {
		log.warn("ignoring %s: the stand-in has no cluster, store or SQL layer", strings.Join(opts.ignored, " "))
	}
	if opts.certsDir, err = filepath.Abs(opts.certsDir); err != nil {
		return fail("--certs-dir: %v", err)
	}
	n := &node{opts: opts, log: log, cert: certsdir.OptionsFromEnv()}
	if n.cert.SkipPermissionCheck {
		log.warn("COCKROACH_SKIP_KEY_PERMISSION_CHECK is set: key permissions are not checked")
	}
	if err := n.load(); err != nil {
		return fail("cannot load certificates: %v", err)
	}
	sqlLn, err := listen(opts.listenAddr, "--listen-addr")
	if err != nil {
		return fail("%v", err)
	}
	httpLn, err := listen(opts.httpAddr, "--http-addr")
	if err != nil {
		return fail("%v", err)
	}
	n.sqlAddr, n.httpAddr = sqlLn.Addr().String(), httpLn.Addr().String()
	go n.serveSQL(sqlLn)
	srv := &http.Server{
		Handler: n.handler(), ReadHeaderTimeout: ioTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if sc, ok := c.(servedConn); ok {
				return context.WithValue(ctx, setKey{}, sc.set)
			}
			return ctx
		},
		ErrorLog: nil,
	}
	srv.SetKeepAlivesEnabled(false)
	go func() { _ = srv.Serve(consoleListener{Listener: httpLn, n: n}) }()
	if opts.pidFile != "" {
		if err := writePidFile(opts.pidFile); err != nil {
			return fail("--pid-file %s: %v", opts.pidFile, err)
		}
	}
	log.info("stand-in ready: sql=%s http=%s pid=%d", n.sqlAddr, n.httpAddr, os.Getpid())

	// The main goroutine (locked to the main thread) takes the signals and
	// hands them on at once, so that it is back in rt_sigtimedwait quickly;
	// reloads run one after the other in their own goroutine.
	hangups := make(chan [2]int, 64)
	reloaded := make(chan struct{})
	go func() {
		for sender := range hangups {
			n.reload(sender[0], sender[1])
		}
		close(reloaded)
	}()
	for {
		sig, pid, uid := waitSignal()
		sender := fmt.Sprintf("(from uid=%d pid=%d)", uid, pid)
		if sig == syscall.SIGHUP {
			log.info("received signal %q, triggering certificate reload %s", signalName(sig), sender)
			hangups <- [2]int{pid, uid}
			continue
		}
		log.info("received signal %q, initiating shutdown %s", signalName(sig), sender)
		break
	}
	close(hangups)
	<-reloaded
	sqlLn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	if opts.pidFile != "" {
		removePidFile(opts.pidFile)
	}
	log.info("shutdown completed")
	return 0
}
