package cache

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// reporter writes progress: a live bar on a terminal, one line per phase otherwise (a log
// file or CI output must not fill with carriage-return redraws).
type reporter struct {
	w   io.Writer // nil: silent
	tty bool
}

func newReporter(w io.Writer) *reporter {
	r := &reporter{w: w}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		r.tty = true
	}
	return r
}

func (r *reporter) line(format string, args ...any) {
	if r.w != nil {
		fmt.Fprintf(r.w, format+"\n", args...)
	}
}

// bar returns a writer that counts downloaded bytes (total -1 when unknown) and a function
// that ends the display (filled only when the download completed). Off a terminal the
// writer is a no-op and only phase lines appear.
func (r *reporter) bar(total int64, desc string) (io.Writer, func(ok bool)) {
	if r.w == nil || !r.tty {
		return io.Discard, func(bool) {}
	}
	b := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(r.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowBytes(true), // byte counts and the rate
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionUseIECUnits(true),    // MiB, as the phase lines say
		progressbar.OptionSetPredictTime(true), // the ETA
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetRenderBlankState(true),
	)
	return barWriter{b}, func(ok bool) {
		if ok {
			b.Finish()
		} else {
			b.Exit()
		}
		fmt.Fprintln(r.w)
	}
}

// barWriter feeds the bar and never fails: the bar reports an error when counts pass its
// total, and a display quirk must not abort a download (io.MultiWriter stops on errors).
type barWriter struct{ b *progressbar.ProgressBar }

func (w barWriter) Write(p []byte) (int, error) {
	w.b.Add64(int64(len(p)))
	return len(p), nil
}
