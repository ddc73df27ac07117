// Package shaders holds the network's WGSL compute shaders (embedded, one file per operation)
// and the Go specs that specialise them: shapes, channel counts and fused steps are baked into
// the text with text/template, because the native WGSL front end (wgpu about 0.19) has no
// `override`. Every spec says its bindings, its dispatch grid and its FLOPs; package model
// turns specs into a plan.
package shaders

import (
	"bytes"
	"embed"
	"fmt"
	"sync"
	"text/template"

	"ctseg/gpu"
)

//go:embed *.wgsl
var files embed.FS

var (
	tmplOnce sync.Once
	tmpl     *template.Template
	tmplErr  error
)

func templates() (*template.Template, error) {
	tmplOnce.Do(func() {
		tmpl, tmplErr = template.New("").Option("missingkey=error").Funcs(template.FuncMap{
			"add": func(a, b int) int { return a + b },
			// seq n is 0..n-1, for unrolling loops in templates
			"seq": func(n int) []int {
				s := make([]int, n)
				for i := range s {
					s[i] = i
				}
				return s
			},
		}).ParseFS(files, "*.wgsl")
	})
	return tmpl, tmplErr
}

// Render fills a shader template with its parameters.
func Render(name string, params any) (string, error) {
	t, err := templates()
	if err != nil {
		return "", fmt.Errorf("shaders: parsing templates: %w", err)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, params); err != nil {
		return "", fmt.Errorf("shaders: rendering %s: %w", name, err)
	}
	return b.String(), nil
}

// Spec is what every operation's spec provides.
type Spec interface {
	// Name labels the pipeline ("conv3x3 32->64 s2 48x48x48").
	Name() string
	// Kind groups operations for reports ("conv3x3", "groupnorm", ...).
	Kind() string
	// Source renders the WGSL.
	Source() (string, error)
	// Bindings lists the binding slots in order.
	Bindings() []gpu.Access
}

// Compile renders and compiles a spec's pipeline (cached by text).
func Compile(ctx *gpu.Context, s Spec) (*gpu.Pipeline, error) {
	src, err := s.Source()
	if err != nil {
		return nil, err
	}
	return ctx.Pipeline(s.Name(), src, s.Bindings())
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
