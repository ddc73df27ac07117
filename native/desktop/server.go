//go:build !js

// Package desktop is the local half of `ctseg app`: the page is served on the loopback
// interface, and when the browser cannot run the network (no WebGPU) or the user prefers it,
// the page sends the CT it decoded to this server, which segments it on the computer's native
// GPU exactly as `ctseg segment` does and sends the labels back.
//
// A server on 127.0.0.1 is reachable by every web page the user opens (through the browser)
// and every local user. It therefore trusts no one by default, as Jupyter, Syncthing and
// code-server do:
//   - Host must be exactly 127.0.0.1:PORT, localhost:PORT or [::1]:PORT (DNS rebinding);
//   - a state-changing request whose Origin is not the app's own is refused (cross-site forms);
//   - the API needs a session cookie (HttpOnly, SameSite=Strict) that only a one-time launch
//     token, printed or handed to the browser by ctseg itself, can obtain;
//   - and a per-session CSRF token in the X-CSRF-Token header, which a cross-site page cannot read;
//   - no CORS headers, no caching of API responses. CTs and results stay in memory.
package desktop

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"ctseg/viewer"
)

// Options configure a Server.
type Options struct {
	// Port is the port the server listens on, for the Host and Origin allow-lists.
	Port int
	// Instance is the secret of the runtime file: a second `ctseg app` of the same user proves
	// it knows it to get a launch token for its browser (POST /launch/token, see instance.go).
	Instance string
	// MaxUpload caps a CT sent to POST /api/jobs, in bytes (DefaultMaxUpload when 0).
	MaxUpload int64
	// Runner segments the CTs; nil serves the page and the session API only.
	Runner Runner
	// RuntimeDir is the runtime folder (RuntimeDir()): a launch file there (OpenBrowser) is
	// removed once its token is used. Empty: none is looked for.
	RuntimeDir string
}

// DefaultMaxUpload is the largest CT POST /api/jobs takes: 1 GiB holds a 512x512x2048 int16
// CT (the page sends int16 whenever the values allow) or 512x512x1024 float32.
const DefaultMaxUpload = 1 << 30

// Server holds the sessions, the launch tokens and the current job.
type Server struct {
	opt   Options
	hosts map[string]bool // exact Host values accepted

	mu       sync.Mutex
	tokens   map[string]time.Time // unused launch tokens and when they expire
	sessions map[string]string    // session cookie -> CSRF token
	jobs     jobs
}

// tokenLife is how long a launch token works: long enough for a browser to start, short
// enough that a link left in a terminal's scrollback or a launch file is soon worthless.
const tokenLife = 2 * time.Minute

// New returns a server for the given options.
func New(opt Options) *Server {
	if opt.MaxUpload <= 0 {
		opt.MaxUpload = DefaultMaxUpload
	}
	s := &Server{opt: opt, tokens: map[string]time.Time{}, sessions: map[string]string{}}
	s.hosts = map[string]bool{}
	for _, h := range []string{"127.0.0.1", "localhost", "[::1]"} {
		s.hosts[fmt.Sprintf("%s:%d", h, opt.Port)] = true
	}
	return s
}

// cookieName carries the port: cookies are not port-specific, and two instances (or another
// local app) must not overwrite each other's session.
func (s *Server) cookieName() string { return fmt.Sprintf("ctseg_session_%d", s.opt.Port) }

// LaunchToken returns a new one-time token for GET /launch?t=TOKEN, valid for tokenLife.
func (s *Server) LaunchToken() string {
	t := randomHex(32)
	now := time.Now()
	s.mu.Lock()
	for k, exp := range s.tokens {
		if now.After(exp) {
			delete(s.tokens, k)
		}
	}
	s.tokens[t] = now.Add(tokenLife)
	s.mu.Unlock()
	return t
}

// Close stops the current job (after its current window) and forgets the sessions.
func (s *Server) Close() {
	s.jobs.cancelAll()
	s.mu.Lock()
	s.sessions = map[string]string{}
	s.tokens = map[string]time.Time{}
	s.mu.Unlock()
}

// Handler guards next (the page's assets, viewer.NewHandler) and serves /launch and the API.
func (s *Server) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		viewer.SetSecurityHeaders(w.Header())
		if !s.hosts[strings.ToLower(r.Host)] {
			http.Error(w, "this server answers only to 127.0.0.1, localhost and [::1] on its own port", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
				http.Error(w, "cross-origin request refused", http.StatusForbidden)
				return
			}
		}
		p := r.URL.Path
		switch {
		case p == "/launch":
			s.launch(w, r)
		case p == "/launch/token":
			s.mintToken(w, r)
		case p == "/api" || strings.HasPrefix(p, "/api/"):
			w.Header().Set("Cache-Control", "no-store")
			s.api(w, r, next)
		case strings.HasPrefix(p, "/weights/"):
			// The weight files may be private (fine-tuned, or the user's cache): to the page of a
			// session only, not to every local process.
			if _, ok := s.session(r); !ok {
				http.Error(w, "no session: open the link ctseg app printed (or run ctseg app again)", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// launch swaps a one-time token for a session cookie and sends the browser to the page.
func (s *Server) launch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	t := r.URL.Query().Get("t")
	s.mu.Lock()
	exp, ok := s.tokens[t]
	ok = ok && t != "" && time.Now().Before(exp)
	delete(s.tokens, t)
	var sid string
	if ok {
		sid = randomHex(32)
		s.sessions[sid] = randomHex(32)
	}
	s.mu.Unlock()
	if !ok {
		http.Error(w, "this launch link is not valid (each works once): run ctseg app again to open the app", http.StatusForbidden)
		return
	}
	removeLaunchFile(s.opt.RuntimeDir, t) // the browser has read it; the token in it is spent
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(), Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// mintToken gives a second `ctseg app` of the same user, which read the instance secret from
// the 0600 runtime file, a launch token for its browser; both sides prove the secret without
// sending it (RequestToken).
func (s *Server) mintToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	nonce := r.Header.Get("X-Ctseg-Nonce")
	got := r.Header.Get("X-Ctseg-Proof")
	if s.opt.Instance == "" || len(nonce) != 32 || !hmac.Equal([]byte(got), []byte(requestProof(s.opt.Instance, nonce))) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	t := s.LaunchToken()
	writeJSON(w, map[string]string{"token": t, "proof": tokenProof(s.opt.Instance, nonce, t)})
}

// session returns the CSRF token of the request's session cookie.
func (s *Server) session(r *http.Request) (csrf string, ok bool) {
	c, err := r.Cookie(s.cookieName())
	if err != nil {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	csrf, ok = s.sessions[c.Value]
	return csrf, ok
}

func (s *Server) api(w http.ResponseWriter, r *http.Request, next http.Handler) {
	csrf, ok := s.session(r)
	if !ok {
		http.Error(w, "no session: open the link ctseg app printed (or run ctseg app again)", http.StatusForbidden)
		return
	}
	if r.URL.Path == "/api/session" {
		if r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		writeJSON(w, map[string]string{"csrf": csrf})
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(csrf)) != 1 {
		http.Error(w, "missing or wrong X-CSRF-Token header", http.StatusForbidden)
		return
	}
	switch p := r.URL.Path; {
	case p == "/api/capabilities":
		s.capabilities(w, r)
	case p == "/api/jobs" || strings.HasPrefix(p, "/api/jobs/"):
		s.jobsAPI(w, r)
	default:
		next.ServeHTTP(w, r) // the page's own API (api/weights)
	}
}

func (s *Server) capabilities(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	c := Capabilities{MaxUploadBytes: s.opt.MaxUpload}
	if s.opt.Runner != nil {
		c = s.opt.Runner.Capabilities()
		c.MaxUploadBytes = s.opt.MaxUpload
	}
	writeJSON(w, c)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// NewSecret returns 32 random bytes in hex: an instance secret.
func NewSecret() string { return randomHex(32) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b)
}
