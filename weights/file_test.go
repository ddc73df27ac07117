package weights

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseDetects(t *testing.T) {
	sd := Random(smallConfig, 11)
	var st bytes.Buffer
	require.NoError(t, WriteSafetensors(&st, sd, WriteOptions{}))
	cases := []struct {
		name string
		data []byte
		want string // "" = success
	}{
		{"torch zip", checkpoint(t, fakeFromStateDict(sd)), ""},
		{"safetensors", st.Bytes(), ""},
		{"empty", nil, "not a MONAI checkpoint or ctseg weight file"},
		{"text", []byte("hello, this is not weights"), "not a MONAI checkpoint or ctseg weight file"},
		{"legacy pickle", []byte{0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'}, "legacy (non-zip) torch.save format"},
		{"nifti-ish", append(make([]byte, 8), 0x5c, 1, 0, 0), "not a MONAI checkpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.data)
			if c.want != "" {
				require.ErrorContains(t, err, c.want)
				return
			}
			require.NoError(t, err)
			requireBitEqual(t, sd, got)
		})
	}
}

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.safetensors")
	sd := Random(smallConfig, 12)
	require.NoError(t, Save(path, sd, WriteOptions{F16: true, Metadata: map[string]string{"variant": "lowres"}}))
	got, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, "lowres", got.Meta["variant"])
	cfg, err := InferConfig(got)
	require.NoError(t, err)
	require.Equal(t, smallConfig, cfg)

	// Overwrite with f32: replaced as a whole.
	require.NoError(t, Save(path, sd, WriteOptions{}))
	got, err = Load(path)
	require.NoError(t, err)
	requireBitEqual(t, sd, got)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())

	// A failing save leaves the old file and no temporary behind.
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	bad := Random(smallConfig, 12)
	bad.Tensors[0].Data[0] = 1e6
	err = Save(path, bad, WriteOptions{F16: true})
	require.ErrorContains(t, err, "saving weights "+path)
	require.ErrorContains(t, err, "float16 range")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
}

func TestLoadErrorsNamePath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.pt")
	_, err := Load(missing)
	require.ErrorContains(t, err, missing)

	junk := filepath.Join(dir, "junk.pt")
	require.NoError(t, os.WriteFile(junk, []byte("junk junk junk"), 0o644))
	_, err = Load(junk)
	require.ErrorContains(t, err, "loading weights "+junk+": not a MONAI checkpoint or ctseg weight file")

	_, err = Load(dir)
	require.ErrorContains(t, err, "not a regular file")

	require.Error(t, Save(filepath.Join(dir, "no", "such", "dir.safetensors"), Random(tinyConfig, 1), WriteOptions{}))
}
