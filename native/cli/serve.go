//go:build !js

package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"ctseg/viewer"
	"ctseg/weights/cache"
)

func init() {
	register("serve", "serve the browser app (segmentation on your GPU, in the page)", runServe)
}

func runServe(env *Env, args []string) error {
	fs := newFlags(env, "serve", "[--addr 127.0.0.1:8080] [--weights-dir DIR]")
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (loopback unless you name another interface)")
	wdir := fs.String("weights-dir", "", "directory whose weight files (.pt, .safetensors) the page may load")
	verbose := fs.Bool("verbose", false, "log every request to stderr")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := viewer.CheckWasm(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w (choose another with --addr 127.0.0.1:PORT)", *addr, err)
	}
	defer ln.Close()
	tcp := ln.Addr().(*net.TCPAddr)
	opt := viewer.Options{WeightsDir: *wdir, LoopbackOnly: tcp.IP.IsLoopback()}
	if *wdir == "" {
		opt.Cached = cachedWeights(env, "serve")
	}
	if *verbose {
		opt.Log = env.Stderr
	}
	h, err := viewer.NewHandler(opt)
	if err != nil {
		return err
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, fmt.Sprint(tcp.Port)) + "/"
	if !tcp.IP.IsLoopback() {
		fmt.Fprintf(env.Stderr, "ctseg serve: listening on %s, reachable from other machines (they get the app only; images stay in each browser)\n", ln.Addr())
	}
	fmt.Fprintf(env.Stdout, "ctseg: the app is at %s (Ctrl-C to stop)\n", url)

	srv := newHTTPServer(h)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	}
}

// newHTTPServer is the HTTP server of serve and app: bounded headers, and idle keep-alive
// connections (any local process may open them) closed after two minutes.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
}

// cachedWeights offers the weight cache's files (`ctseg weights fetch`), f16 where there is
// one, under fixed names the page recognises ("3mm-f16.safetensors"); when none is cached it
// says how to get them.
func cachedWeights(env *Env, cmd string) map[string]string {
	out := map[string]string{}
	for _, v := range cache.Official().Names() {
		e, err := cache.Find("", v)
		if err != nil {
			continue
		}
		for _, prec := range []string{"f16", "f32"} {
			if p, err := e.Path(prec); err == nil {
				out[v+"-"+prec+".safetensors"] = p
				break
			}
		}
	}
	if len(out) == 0 {
		fmt.Fprintf(env.Stderr, "ctseg %s: no cached weights; the page can load a model.pt from disk, or run `ctseg weights fetch` (or `ctseg weights import FILE`) first\n", cmd)
	}
	return out
}
