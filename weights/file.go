package weights

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"ctseg/internal/atomicfile"
)

// maxFileBytes bounds Load: the bundle checkpoint is 75 MB; a file this size is not weights.
const maxFileBytes = 2 << 30

// Parse reads weights from memory, detecting the format by content: a zip (torch.save
// checkpoint) or the safetensors layout (the project file).
func Parse(data []byte) (*StateDict, error) {
	switch {
	case bytes.HasPrefix(data, []byte("PK\x03\x04")):
		return ReadTorch(data)
	case looksLikeSafetensors(data):
		return ReadSafetensors(data)
	case len(data) >= 2 && data[0] == 0x80 && data[1] <= 5:
		// A bare pickle: torch.save before PyTorch 1.6 (or _use_new_zipfile_serialization=False).
		return nil, fmt.Errorf("%w: legacy (non-zip) torch.save format; re-save it with PyTorch >= 1.6", errNotWeights)
	}
	return nil, errNotWeights
}

// Load reads and parses a weight file; errors name the path.
func Load(path string) (*StateDict, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("loading weights: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("loading weights %s: not a regular file", path)
	}
	if fi.Size() > maxFileBytes {
		return nil, fmt.Errorf("loading weights %s: %d bytes is over the %d byte limit", path, fi.Size(), int64(maxFileBytes))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading weights: %w", err)
	}
	sd, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("loading weights %s: %w", path, err)
	}
	return sd, nil
}

// Save writes sd as a project weight file at path, atomically (internal/atomicfile): a
// failure at any point leaves path as it was. Whether overwriting is allowed is the caller's
// decision.
func Save(path string, sd *StateDict, opt WriteOptions) error {
	err := atomicfile.Write(path, atomicfile.Options{Force: true}, func(w io.Writer) error {
		return WriteSafetensors(w, sd, opt)
	})
	if err != nil {
		return fmt.Errorf("saving weights %s: %w", path, err)
	}
	return nil
}
