//go:build !js

package cli_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/native/cli"
)

// TestAppMaxUpload: --max-upload-mb outside 1 to 65536 MiB (64 GiB; a larger value would
// overflow in bytes) is refused with one line, before anything starts.
func TestAppMaxUpload(t *testing.T) {
	t.Setenv("CTSEG_RUNTIME_DIR", t.TempDir())
	for _, v := range []string{"0", "-1", "65537", "9223372036854775807"} {
		var out, errb bytes.Buffer
		code := cli.Main([]string{"app", "--no-open", "--max-upload-mb", v}, &out, &errb)
		require.Equal(t, 1, code, "--max-upload-mb %s: %s", v, errb.String())
		require.Equal(t, 1, strings.Count(errb.String(), "\n"), "one line: %q", errb.String())
		require.Contains(t, errb.String(), "--max-upload-mb "+v+": must be 1 to 65536 (MiB)")
		require.Empty(t, out.String(), "nothing started")
	}
}
